/* tasker 0.1.0 -> 0.2.0 */
\echo Use "ALTER EXTENSION tasker UPDATE TO '0.2.0'" to load this file. \quit

/*
 * The install script of 0.2.0 is tasker--0.1.0.sql followed by this file
 * (see the Makefile), so everything here must work both on a fresh 0.1.0
 * schema and on one that has run for months.  Sections, in order:
 * security (issue 15 A), bad input and resource bounds (issue 15 B).
 */

/* ---- issue 15 B10 ---- */
/* (and D20: a YAML stream of several templates in one call) */
CREATE FUNCTION tasker_register_templates(yaml text, replace boolean DEFAULT false)
RETURNS integer[]
AS 'MODULE_PATHNAME', 'tasker_register_templates_sql'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION tasker_register_templates(text, boolean) IS
    'Register the template of each document of a YAML stream (documents separated by --- lines), in order, in one transaction; returns their named_task_ids';
