# mpprof: what the qemu port lacks, as a user C module of its own, so the
# instrumented and the plain firmware are built alike (the vm-instrumented
# crate passes the flags):
# - MPPROF_QEMU_HAL=1 before v1.27: the clock (the port has none). The
#   vector table's SysTick_Handler is wrapped to ours (mpprof_qemu_hal.c
#   says why).
# - MPPROF_QEMU_ROMFS=1 on every version: the segment the script's modules
#   are mounted from at /rom (mpprof_qemu_romfs.c).
# - MPPROF_QEMU_ASYNCIO=1 where there is a clock (ours, or the port's from
#   v1.27): asyncio, which the port leaves off.
ifeq ($(MPPROF_QEMU_HAL),1)
SRC_USERMOD_C += $(USERMOD_DIR)/mpprof_qemu_hal.c
LDFLAGS_USERMOD += -Wl,--wrap=SysTick_Handler
CFLAGS_USERMOD += -DMPPROF_QEMU_HAL=1
endif
ifeq ($(MPPROF_QEMU_ROMFS),1)
SRC_USERMOD_C += $(USERMOD_DIR)/mpprof_qemu_romfs.c
CFLAGS_USERMOD += -DMPPROF_QEMU_ROMFS=1
endif
ifeq ($(MPPROF_QEMU_ASYNCIO),1)
CFLAGS_USERMOD += -DMPPROF_QEMU_ASYNCIO=1
endif
