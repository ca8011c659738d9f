# mpprof: what the host builds (instrumented and plain) freeze, as the unix
# port's own variants do: upstream's asyncio package, nothing else. Frozen
# bytecode runs unprofiled (its time shows as its caller's); the script's
# own coroutines are profiled.
include("$(MPY_DIR)/extmod/asyncio")
