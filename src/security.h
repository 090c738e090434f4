/*-------------------------------------------------------------------------
 *
 * security.h
 *		The identity that tasker's ownership and privilege decisions use.
 *
 * IDENTIFICATION
 *		src/security.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SECURITY_H
#define TASKER_SECURITY_H

#include "postgres.h"

extern Oid	tasker_caller(void);

#endif							/* TASKER_SECURITY_H */
