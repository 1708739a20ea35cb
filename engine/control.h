/* control.h - the control thread: watches the local config file, builds and
 * publishes snapshots, reclaims old ones, and answers readiness probes.
 * zt_control_start/stop: main thread. */
#ifndef ZT_CONTROL_H
#define ZT_CONTROL_H

#include "engine/runtime.h"

struct zt_control;

/* Loads the config once (errors are returned, and main exits), publishes it,
 * opens the readiness listener. Returns 0 or -errno. */
int zt_control_start(struct zt_runtime *rt, struct zt_control **out);
/* Starts the thread, once the shards exist (rt->shards). */
int zt_control_run(struct zt_control *c);
/* Stops the thread and frees what it owns (not the current snapshot). */
void zt_control_stop(struct zt_control *c);

#endif
