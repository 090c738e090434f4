/*-------------------------------------------------------------------------
 *
 * security.c
 *		The identity that tasker's ownership and privilege decisions use.
 *
 * Every decision about who owns a template or a handler class, and every
 * privilege check made on a user's behalf, asks tasker_caller() rather
 * than GetUserId(), so that the role is the one that called tasker's SQL
 * function even where tasker runs its own statements as another role.
 * For now the caller is the current user; it is valid in any transaction.
 *
 * IDENTIFICATION
 *		src/security.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "security.h"

/*
 * tasker_caller: the role on whose behalf the running tasker function acts.
 */
Oid
tasker_caller(void)
{
	return GetUserId();
}
