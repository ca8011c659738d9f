# mpprof: the unix port's standard variant with the mpprof runtime built in
# (passed as USER_C_MODULES by the vm-instrumented crate).
MPPROF_PORT = unix
