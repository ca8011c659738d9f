# mpprof: the clock (and the ROMFS of the script's modules) the qemu port
# lacks before v1.27, as a user C module of its own, so the instrumented and
# the plain firmware are built alike (the vm-instrumented crate passes
# MPPROF_QEMU_HAL=1 for those versions). The vector table's SysTick_Handler
# is wrapped to ours (mpprof_qemu_hal.c says why).
ifeq ($(MPPROF_QEMU_HAL),1)
SRC_USERMOD_C += $(USERMOD_DIR)/mpprof_qemu_hal.c
LDFLAGS_USERMOD += -Wl,--wrap=SysTick_Handler
CFLAGS_USERMOD += -DMPPROF_QEMU_HAL=1
endif
