// mpprof: the hooked copy of MicroPython's bytecode VM.
//
// py/vm.c is compiled a second time under another name with the opcode hook
// defined, so that the plain VM stays exactly upstream's code (no per-opcode
// check when profiling is off) and frames run here only while profiling is on.
// Frames are handed to it where they are run (MICROPY_VM_EXECUTE_BYTECODE).

#define MPPROF_VM_HOOKED_COPY (1)
#define mp_execute_bytecode mpprof_vm_execute_hooked

#include "py/mpconfig.h"
#include "mpprof_rt.h"
#include "py/vm.c"
