/* The few things bindgen's static-function wrappers cannot reach:
 * rte_errno is a per-lcore thread-local behind a macro. */
#include "wrapper.h"

int vsw_errno(void) { return rte_errno; }

const char *vsw_strerror_last(void) { return rte_strerror(rte_errno); }
