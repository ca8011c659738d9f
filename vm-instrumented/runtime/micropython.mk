# mpprof runtime, built into MicroPython as a user C module.
MPPROF_MOD_DIR := $(USERMOD_DIR)

SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_rt.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_wire.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_vm.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_mod.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_port_$(MPPROF_PORT).c
# The board transport: RTT (default; read through a debug probe or qemu's
# gdbstub) or MPPROF_TRANSPORT=uart (envelopes on the REPL link).
ifeq ($(MPPROF_TRANSPORT),uart)
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_uart.c
CFLAGS_USERMOD += -DMPPROF_TRANSPORT_UART=1
else ifneq ($(MPPROF_PORT),unix)
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_rtt.c
endif

CFLAGS_USERMOD += -I$(MPPROF_MOD_DIR)

# Time per line (mpprof run --line-time): its own build, so the default
# build has none of it. Sampled with a profiling timer on the unix port,
# stamped at every dispatch elsewhere (mpprof_line.c).
ifeq ($(MPPROF_LINE_TIME),1)
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_line.c
CFLAGS_USERMOD += -DMPPROF_LINE_TIME=1
ifeq ($(MPPROF_PORT),unix)
CFLAGS_USERMOD += -DMPPROF_LINE_SAMPLED=1
LDFLAGS_USERMOD += -lrt
endif
endif

# The emulated board's RTT block goes in its 16 MiB RAM at 0x21000000, which
# MicroPython leaves alone (mpprof_qemu_config.h, mpprof_rtt.c).
ifeq ($(MPPROF_PORT),qemu)
CFLAGS_USERMOD += -DMPPROF_PORT_QEMU=1
endif
# The host's clock is read inline (mpprof_port_unix.h); its frames' CRC
# takes four bytes a step (mpprof_wire.c); its known types have room to
# spread (mpprof_rt.c).
ifeq ($(MPPROF_PORT),unix)
CFLAGS_USERMOD += -DMPPROF_PORT_UNIX=1 -DMPPROF_CRC_SLICED=1 -DMPPROF_KNOWN_SLOTS=1024
endif
# The qemu port links through $(CC) up to v1.28 and with $(LD) itself after.
ifeq ($(MPPROF_SHARED_RTT),1)
ifneq ($(shell grep -c '$$(Q)$$(LD) $$(LDFLAGS)' $(CURDIR)/Makefile),0)
LDFLAGS_USERMOD += --section-start=.mpprof_rtt=0x21000000
else
LDFLAGS_USERMOD += -Wl,--section-start=.mpprof_rtt=0x21000000
endif
endif

# The hooked VM copy gets the same optimisation as py/vm.c, and so do the
# hooks it calls on every frame and allocation.
$(BUILD)/mpprof/mpprof_vm.o: CFLAGS += $(CSUPEROPT)
$(BUILD)/mpprof/mpprof_rt.o: CFLAGS += $(CSUPEROPT)
$(BUILD)/mpprof/mpprof_line.o: CFLAGS += $(CSUPEROPT)
