// mpprof: the unix port's standard variant with the mpprof profiling hooks.

#include "variants/standard/mpconfigvariant.h"
#include "mpprof_hooks.h"
