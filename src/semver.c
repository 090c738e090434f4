/*-------------------------------------------------------------------------
 *
 * semver.c
 *		Semantic versions (X.Y.Z[-pre.release][+build]): validation and
 *		ordering by the rules of semver.org.
 *
 * Ordering compares major, minor and patch numerically; a version with a
 * pre-release sorts below the same version without one; pre-release
 * identifiers compare numerically when both are numeric, numeric below
 * alphanumeric, otherwise as ASCII; build metadata is ignored.  So 1.10.0
 * is above 1.9.0, and 2.0.0-beta.1 is below 2.0.0.
 *
 * IDENTIFICATION
 *		src/semver.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "semver.h"

/*
 * numeric_part: parse a non-negative integer without leading zeros at *p;
 * advance *p.  Returns false if there is none.
 */
static bool
numeric_part(const char **p, uint64 *value)
{
	const char *s = *p;

	if (!isdigit((unsigned char) *s))
		return false;
	if (*s == '0' && isdigit((unsigned char) s[1]))
		return false;
	*value = 0;
	while (isdigit((unsigned char) *s))
	{
		if (*value > (PG_UINT64_MAX - 9) / 10)
			return false;
		*value = *value * 10 + (*s - '0');
		s++;
	}
	*p = s;
	return true;
}

/*
 * identifiers_valid: dot-separated non-empty [0-9A-Za-z-] identifiers up
 * to end or stop.
 */
static bool
identifiers_valid(const char *s, char stop)
{
	int			len = 0;

	for (; *s && *s != stop; s++)
	{
		if (*s == '.')
		{
			if (len == 0)
				return false;
			len = 0;
		}
		else if (isalnum((unsigned char) *s) || *s == '-')
			len++;
		else
			return false;
	}
	return len > 0;
}

/*
 * parse_core: parse X.Y.Z into v[3]; returns the rest of the string, or
 * NULL when the core is malformed.
 */
static const char *
parse_core(const char *s, uint64 v[3])
{
	int			i;

	for (i = 0; i < 3; i++)
	{
		if (!numeric_part(&s, &v[i]))
			return NULL;
		if (i < 2)
		{
			if (*s != '.')
				return NULL;
			s++;
		}
	}
	return s;
}

/*
 * tasker_semver_valid: whether a string is a semantic version.
 */
bool
tasker_semver_valid(const char *version)
{
	uint64		v[3];
	const char *rest = parse_core(version, v);

	if (rest == NULL)
		return false;
	if (*rest == '-')
	{
		if (!identifiers_valid(rest + 1, '+'))
			return false;
		rest = strchr(rest, '+') ? strchr(rest, '+') : rest + strlen(rest);
	}
	if (*rest == '+')
		return identifiers_valid(rest + 1, '\0');
	return *rest == '\0';
}

/*
 * compare_identifier: compare one pre-release identifier of each version,
 * each running up to the next '.', '+' or end.
 */
static int
compare_identifier(const char *a, int alen, const char *b, int blen)
{
	bool		anum = strspn(a, "0123456789") >= (size_t) alen;
	bool		bnum = strspn(b, "0123456789") >= (size_t) blen;
	int			c;

	if (anum && bnum)
	{
		if (alen != blen)
			return alen < blen ? -1 : 1;
		c = strncmp(a, b, alen);
		return c < 0 ? -1 : (c > 0);
	}
	if (anum != bnum)
		return anum ? -1 : 1;
	c = strncmp(a, b, Min(alen, blen));
	if (c != 0)
		return c < 0 ? -1 : 1;
	return alen == blen ? 0 : (alen < blen ? -1 : 1);
}

/*
 * compare_prerelease: compare two pre-release strings (after the '-').
 * An absent pre-release (NULL) is above any present one.
 */
static int
compare_prerelease(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == NULL) - (b == NULL);
	for (;;)
	{
		int			alen = strcspn(a, ".+");
		int			blen = strcspn(b, ".+");
		int			c = compare_identifier(a, alen, b, blen);

		if (c != 0)
			return c;
		a += alen;
		b += blen;
		if (*a != '.' || *b != '.')
			return (*a == '.') - (*b == '.');
		a++;
		b++;
	}
}

/*
 * tasker_semver_compare: <0, 0 or >0 as a sorts below, equal to or above b.
 * Strings that are not semantic versions sort below every version, and
 * among themselves by strcmp.
 */
int
tasker_semver_compare(const char *a, const char *b)
{
	uint64		va[3];
	uint64		vb[3];
	const char *ra = tasker_semver_valid(a) ? parse_core(a, va) : NULL;
	const char *rb = tasker_semver_valid(b) ? parse_core(b, vb) : NULL;
	int			i;

	if (ra == NULL || rb == NULL)
		return (ra == NULL && rb == NULL) ? strcmp(a, b) : (ra == NULL ? -1 : 1);
	for (i = 0; i < 3; i++)
		if (va[i] != vb[i])
			return va[i] < vb[i] ? -1 : 1;
	return compare_prerelease(*ra == '-' ? ra + 1 : NULL, *rb == '-' ? rb + 1 : NULL);
}

/*
 * tasker_semver_is_release: a valid version without a pre-release part.
 */
bool
tasker_semver_is_release(const char *version)
{
	uint64		v[3];
	const char *rest;

	if (!tasker_semver_valid(version))
		return false;
	rest = parse_core(version, v);
	return *rest != '-';
}
