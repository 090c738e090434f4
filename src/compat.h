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

#endif							/* TASKER_COMPAT_H */
