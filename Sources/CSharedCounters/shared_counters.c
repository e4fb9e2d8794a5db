// The helpers are `static inline` in the header; SwiftPM builds a C target from at least one source.
#include "CSharedCounters.h"
