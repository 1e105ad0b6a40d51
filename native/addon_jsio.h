/* N-API glue for the js engine's batched I/O (reader.c for UDP, writer.c): udpOpen, udpClose,
 * udpStartReader, udpSendBatch, tunWriteBatch, tunSetOffload, jsioStats. */
#ifndef FELT_ADDON_JSIO_H
#define FELT_ADDON_JSIO_H

#include <node_api.h>

/* Adds those functions to the addon's exports. */
void addon_jsio_register(napi_env env, napi_value exports);

#endif
