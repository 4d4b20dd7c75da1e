/* Temporary: replaced by the runtime dispatcher of the fast-scan work. */
#include "avq.h"
const char *avq_isa(void) { return "scalar"; }
