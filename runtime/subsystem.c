/*
 * The one place that names every subsystem (see subsystem.h). A static
 * list rather than constructors or a linker section: the order is written
 * down, and a static link pulls each subsystem in by this reference.
 */
#include <stddef.h>

#include "subsystem.h"

const wf__subsystem *const wf__subsystems[] = {
	&wf__executor_subsystem,
	&wf__observe_subsystem,
	NULL,
};
