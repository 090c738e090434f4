/*-------------------------------------------------------------------------
 *
 * semver.h
 *		Semantic versions: validation and ordering.
 *
 * IDENTIFICATION
 *		src/semver.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_SEMVER_H
#define TASKER_SEMVER_H

extern bool tasker_semver_valid(const char *version);
extern int	tasker_semver_compare(const char *a, const char *b);
extern bool tasker_semver_is_release(const char *version);

#endif							/* TASKER_SEMVER_H */
