#ifndef FELT_ADDON_ENGINE_H
#define FELT_ADDON_ENGINE_H

#include <node_api.h>

/* Adds the engine* functions to the addon's exports. */
void addon_engine_register(napi_env env, napi_value exports);

#endif
