# mpprof runtime, built into MicroPython as a user C module.
MPPROF_MOD_DIR := $(USERMOD_DIR)

SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_rt.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_wire.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_vm.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_mod.c
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_port_$(MPPROF_PORT).c
ifneq ($(MPPROF_PORT),unix)
SRC_USERMOD_C += $(MPPROF_MOD_DIR)/mpprof_rtt.c
endif

CFLAGS_USERMOD += -I$(MPPROF_MOD_DIR)

# The hooked VM copy gets the same optimisation as py/vm.c, and so do the
# hooks it calls on every frame and allocation.
$(BUILD)/mpprof/mpprof_vm.o: CFLAGS += $(CSUPEROPT)
$(BUILD)/mpprof/mpprof_rt.o: CFLAGS += $(CSUPEROPT)
