/*-------------------------------------------------------------------------
 *
 * http_request.h
 *		HTTP steps: the rules of an api step's handler_config, which
 *		template registration asks at registration.
 *
 * The rest of http_request.c (building a request) is for the HTTP files
 * only, through http_internal.h.
 *
 * IDENTIFICATION
 *		src/http_request.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef TASKER_HTTP_REQUEST_H
#define TASKER_HTTP_REQUEST_H

#include "postgres.h"

#include "yaml_reader.h"

extern const TNode *tasker_http_check_config(const char *template_name,
											 const char *subject,
											 const TNode *config);

#endif							/* TASKER_HTTP_REQUEST_H */
