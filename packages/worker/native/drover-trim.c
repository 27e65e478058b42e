/*
 * drover-trim: glibc's malloc_trim(0) for the worker agent, as a Node-API addon.
 *
 * After a big copy the agent's malloc heap stays ~5 MB above its idle size: the chunk buffers
 * of the copy came from it (glibc's mmap threshold rises after the first is freed), and glibc
 * gives back only a free top of its heap, never the free pages below a chunk still in use.
 * malloc_trim(0) gives those back too (madvise). Node has no binding for it, so this is one.
 *
 * scripts/bundle.mjs builds it and carries its bytes inside worker.mjs (the agent travels as one
 * file); memory-trim.ts writes them to the state dir and loads them, where this machine can.
 * The few Node-API declarations it needs are written here: their ABI is stable (Node-API 1),
 * and building needs no Node headers.
 */
#include <malloc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status;
typedef napi_value (*napi_callback)(napi_env env, napi_callback_info info);
extern napi_status napi_create_function(napi_env env, const char *name, size_t length, napi_callback cb, void *data, napi_value *result);
extern napi_status napi_set_named_property(napi_env env, napi_value object, const char *name, napi_value value);
extern napi_status napi_get_boolean(napi_env env, bool value, napi_value *result);

/* trim(): true when memory went back to the system. */
static napi_value trim(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  napi_get_boolean(env, malloc_trim(0) == 1, &result);
  return result;
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", SIZE_MAX, trim, NULL, &fn) == 0) napi_set_named_property(env, exports, "trim", fn);
  return exports;
}

__attribute__((visibility("default"))) int32_t node_api_module_get_api_version_v1(void) { return 1; }
