/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Every PG_VERSION_NUM shim of tasker, in one place.
 *
 * tasker targets PostgreSQL 15 and keeps to APIs that exist, or have a shim
 * here, in 16 and 17.
 *
 * IDENTIFICATION
 *		src/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_COMPAT_H
#define TASKER_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "tasker needs PostgreSQL 15 or later"
#endif

/*
 * tasker_proc_aclcheck, tasker_namespace_aclcheck: a role's privilege on a
 * function or a schema.  PostgreSQL 16 replaced pg_proc_aclcheck and
 * pg_namespace_aclcheck by object_aclcheck.
 */
#if PG_VERSION_NUM >= 160000
#include "catalog/pg_proc.h"
#include "utils/acl.h"
#include "catalog/pg_namespace.h"
#define tasker_proc_aclcheck(fn, role, mode) \
	object_aclcheck(ProcedureRelationId, (fn), (role), (mode))
#define tasker_namespace_aclcheck(nsp, role, mode) \
	object_aclcheck(NamespaceRelationId, (nsp), (role), (mode))
#else
#include "utils/acl.h"
#define tasker_proc_aclcheck(fn, role, mode) pg_proc_aclcheck((fn), (role), (mode))
#define tasker_namespace_aclcheck(nsp, role, mode) \
	pg_namespace_aclcheck((nsp), (role), (mode))
#endif

/*
 * tasker_create_wait_event_set: a WaitEventSet for nevents events.
 * PostgreSQL 17 takes a resource owner (NULL: none) instead of a memory
 * context.
 */
#include "storage/latch.h"
#if PG_VERSION_NUM >= 170000
#define tasker_create_wait_event_set(nevents) CreateWaitEventSet(NULL, (nevents))
#else
#define tasker_create_wait_event_set(nevents) \
	CreateWaitEventSet(CurrentMemoryContext, (nevents))
#endif

/*
 * TASKER_MY_PROC_NUMBER: this process's index in the array of PGPROCs.
 * PostgreSQL 17 keeps it in MyProcNumber.
 */
#include "storage/proc.h"
#if PG_VERSION_NUM >= 170000
#define TASKER_MY_PROC_NUMBER MyProcNumber
#else
#define TASKER_MY_PROC_NUMBER (MyProc->pgprocno)
#endif

#endif							/* TASKER_COMPAT_H */
