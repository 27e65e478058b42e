/*
 * drover-trim: glibc's malloc_trim(0) and the agent's mallopt settings, as a Node-API addon.
 *
 * After a big copy the agent's malloc heap stays ~5 MB above its idle size: the chunk buffers
 * of the copy came from it (glibc's mmap threshold rises after the first is freed), and glibc
 * gives back only a free top of its heap, never the free pages below a chunk still in use.
 * malloc_trim(0) gives those back too (madvise). Node has no binding for it, so this is one.
 *
 * During a copy, glibc's own thresholds made the agent fault its chunk buffers in page by page,
 * again and again: it gives a free top of its heap back as soon as it passes twice the last
 * freed mmapped chunk (~2 MiB), and a copy frees up to a window's worth (8 MiB) of 1 MiB chunks
 * at a time. ~20,000 page faults per 256 MiB copy, 40% of the agent's CPU for it on a VM, where a
 * fault costs ~20 µs. tune() sets the thresholds once: chunks of up to 4 MiB come from the heap,
 * and up to 16 MiB of its free top stays for the next ones (~3,000 faults per copy); trim()
 * gives it all back once the transfers settle.
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

/* The largest allocation served from the heap (bigger ones are mmapped), and the free top of
 * the heap kept for reuse: fixed values (setting either turns glibc's sliding ones off). */
#define HEAP_CHUNK_MAX (4 * 1024 * 1024)
#define KEEP_FREE_TOP (16 * 1024 * 1024)

/* tune(): true when glibc took both settings. */
static napi_value tune(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result = NULL;
  bool took = mallopt(M_MMAP_THRESHOLD, HEAP_CHUNK_MAX) == 1 && mallopt(M_TRIM_THRESHOLD, KEEP_FREE_TOP) == 1;
  napi_get_boolean(env, took, &result);
  return result;
}

__attribute__((visibility("default"))) napi_value napi_register_module_v1(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "trim", SIZE_MAX, trim, NULL, &fn) == 0) napi_set_named_property(env, exports, "trim", fn);
  if (napi_create_function(env, "tune", SIZE_MAX, tune, NULL, &fn) == 0) napi_set_named_property(env, exports, "tune", fn);
  return exports;
}

__attribute__((visibility("default"))) int32_t node_api_module_get_api_version_v1(void) { return 1; }
