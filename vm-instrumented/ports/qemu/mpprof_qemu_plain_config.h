// mpprof: the plain qemu firmware's configuration (MP_CONFIGFILE): upstream's
// port with what the instrumented firmware adds to the port besides the
// profiler (mpprof_qemu_clock.h), so both run the same MicroPython and
// differ only by the hooks.

#include <mpconfigport.h>
#include "mpprof_qemu_clock.h"
