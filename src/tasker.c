/*-------------------------------------------------------------------------
 *
 * tasker.c
 *		Module magic and the entry point of the tasker library.
 *
 * _PG_init runs in every backend that loads the library and, when the
 * library is in shared_preload_libraries, once in the postmaster.  It
 * defines the configuration settings and registers the handler kinds;
 * everything else happens on demand.  This file is the top of the module
 * layers (docs/architecture.md): it may call any module, none calls it.
 *
 * IDENTIFICATION
 *		src/tasker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "flow.h"
#include "guc.h"
#include "handler.h"
#include "notify.h"
#include "shmem.h"
#include "worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/*
 * _PG_init: define the tasker.* settings, register the handler kinds (in
 * the order the executor runs them) and, when preloading, reserve the
 * shared state and register the launcher and the event relay.
 */
void
_PG_init(void)
{
	tasker_define_gucs();
	tasker_register_handler_kind(&tasker_sql_kind);
	tasker_register_handler_kind(&tasker_http_kind);
	tasker_register_handler_kind(&tasker_worker_kind);
	tasker_register_handler_kind(&tasker_flow_kind);
	if (!process_shared_preload_libraries_in_progress)
		return;
	tasker_shmem_register();
	tasker_worker_register();
	tasker_notify_register();
}
