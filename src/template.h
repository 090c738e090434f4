/*-------------------------------------------------------------------------
 *
 * template.h
 *		Task templates: registration from a YAML or JSON text or file.
 *
 * A template goes through four stages, each in its own file, each using
 * only the ones above it in this list:
 *	yaml_reader.c		YAML text -> node tree (the only user of libyaml)
 *	template_check.c	node tree -> TaskTemplate, every check that needs no
 *						catalog access
 *	template_store.c	TaskTemplate -> catalog rows; handler classes
 *						resolved through handler_registry.c
 *	template.c			environment overrides; these entry points
 *
 * IDENTIFICATION
 *		src/template.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_TEMPLATE_H
#define TASKER_TEMPLATE_H

#include "postgres.h"

extern int32 tasker_register_template_text(const char *text, size_t len,
										   bool replace);
extern int32 tasker_register_template_path(const char *path, bool replace);
extern int32 *tasker_register_templates_text(const char *text, size_t len,
											 bool replace, int *n);

#endif							/* TASKER_TEMPLATE_H */
