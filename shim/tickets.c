/*
 * tickets.c — TLS session-ticket keys shared by several gateways.
 *
 * wolfSSL's own ticket keys are random per process, so a ticket issued by
 * one gateway cannot be opened by another. This ring holds keys given from
 * JavaScript (the same on every gateway that shares them): new tickets are
 * sealed with the current key (ChaCha20-Poly1305 from wolfCrypt), and
 * tickets sealed with any key still in the ring are accepted; one sealed
 * with an older key than the current is accepted and replaced by a new one.
 *
 * wolfSSL is not linked: its functions are looked up in the copy Deno
 * already loaded (dlopen of the same path, RTLD_NOLOAD). Only the JavaScript
 * thread calls wolfSSL, so the ring needs no lock.
 *
 * Style: small functions, 0 or a value on success, -errno on failure.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define HP_EXPORT __attribute__((visibility("default")))

#define RING_KEYS 4
#define NAME_SIZE 16 /* WOLFSSL_TICKET_NAME_SZ */
#define KEY_SIZE 32  /* CHACHA20_POLY1305_AEAD_KEYSIZE */
#define IV_SIZE 16   /* WOLFSSL_TICKET_IV_SZ (ChaCha20-Poly1305 uses 12 of them) */
#define TAG_SIZE 16  /* CHACHA20_POLY1305_AEAD_AUTHTAG_SIZE (of the 32-byte mac) */
#define AEAD_IV 12

enum { TICKET_FATAL = -1, TICKET_OK = 0, TICKET_REJECT = 1, TICKET_CREATE = 2 };

typedef int (*aead_encrypt_fn)(const uint8_t *key, const uint8_t *iv, const uint8_t *aad,
                               uint32_t aad_len, const uint8_t *in, uint32_t in_len,
                               uint8_t *out, uint8_t *tag);
typedef int (*aead_decrypt_fn)(const uint8_t *key, const uint8_t *iv, const uint8_t *aad,
                               uint32_t aad_len, const uint8_t *in, uint32_t in_len,
                               const uint8_t *tag, uint8_t *out);
typedef int (*ticket_cb_fn)(void *ssl, unsigned char *name, unsigned char *iv,
                            unsigned char *mac, int enc, unsigned char *ticket, int in_len,
                            int *out_len, void *ctx);
typedef int (*set_cb_fn)(void *ctx, ticket_cb_fn cb);
typedef int (*set_ctx_fn)(void *ctx, void *user);

struct hp_ticket_ring {
    int count; /* keys in use; key 0 seals new tickets */
    uint8_t name[RING_KEYS][NAME_SIZE];
    uint8_t key[RING_KEYS][KEY_SIZE];
    aead_encrypt_fn encrypt;
    aead_decrypt_fn decrypt;
    set_cb_fn set_cb;
    set_ctx_fn set_ctx;
};

/* Look up what the ring needs in the wolfSSL at path (already loaded). */
static int ring_bind(struct hp_ticket_ring *r, const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) return -ENOENT;
    r->encrypt = (aead_encrypt_fn)dlsym(lib, "wc_ChaCha20Poly1305_Encrypt");
    r->decrypt = (aead_decrypt_fn)dlsym(lib, "wc_ChaCha20Poly1305_Decrypt");
    r->set_cb = (set_cb_fn)dlsym(lib, "wolfSSL_CTX_set_TicketEncCb");
    r->set_ctx = (set_ctx_fn)dlsym(lib, "wolfSSL_CTX_set_TicketEncCtx");
    dlclose(lib); /* Deno's own handle keeps it loaded */
    return r->encrypt && r->decrypt && r->set_cb && r->set_ctx ? 0 : -ENOSYS;
}

/* A new, empty ring bound to the wolfSSL loaded from path; NULL on failure. */
HP_EXPORT struct hp_ticket_ring *hp_ticket_ring_new(const char *path) {
    struct hp_ticket_ring *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    if (ring_bind(r, path) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

/* Replace the ring's keys: count entries of NAME_SIZE + KEY_SIZE bytes, the
 * first seals new tickets. Returns 0 or -EINVAL. */
HP_EXPORT int hp_ticket_ring_set(struct hp_ticket_ring *r, const uint8_t *keys, int count) {
    if (!r || count < 0 || count > RING_KEYS) return -EINVAL;
    explicit_bzero(r->name, sizeof r->name);
    explicit_bzero(r->key, sizeof r->key);
    for (int i = 0; i < count; i++) {
        memcpy(r->name[i], keys + i * (NAME_SIZE + KEY_SIZE), NAME_SIZE);
        memcpy(r->key[i], keys + i * (NAME_SIZE + KEY_SIZE) + NAME_SIZE, KEY_SIZE);
    }
    r->count = count;
    return 0;
}

/* The ring's key named name, or -1. */
static int ring_find(const struct hp_ticket_ring *r, const unsigned char *name) {
    for (int i = 0; i < r->count; i++)
        if (memcmp(r->name[i], name, NAME_SIZE) == 0) return i;
    return -1;
}

static int ticket_seal(struct hp_ticket_ring *r, unsigned char *name, unsigned char *iv,
                       unsigned char *mac, unsigned char *ticket, int len, int *out_len) {
    uint8_t aad[NAME_SIZE + IV_SIZE];
    if (r->count == 0) return TICKET_REJECT; /* no keys yet: no ticket */
    memcpy(name, r->name[0], NAME_SIZE);
    if (getrandom(iv, IV_SIZE, 0) != IV_SIZE) return TICKET_FATAL;
    memcpy(aad, name, NAME_SIZE);
    memcpy(aad + NAME_SIZE, iv, IV_SIZE);
    memset(mac, 0, 32);
    if (r->encrypt(r->key[0], iv, aad, sizeof aad, ticket, (uint32_t)len, ticket, mac) != 0)
        return TICKET_FATAL;
    *out_len = len;
    return TICKET_OK;
}

static int ticket_open(struct hp_ticket_ring *r, unsigned char *name, unsigned char *iv,
                       unsigned char *mac, unsigned char *ticket, int len, int *out_len) {
    uint8_t aad[NAME_SIZE + IV_SIZE];
    int i = ring_find(r, name);
    if (i < 0) return TICKET_REJECT; /* a key no longer (or never) in the ring */
    memcpy(aad, name, NAME_SIZE);
    memcpy(aad + NAME_SIZE, iv, IV_SIZE);
    if (r->decrypt(r->key[i], iv, aad, sizeof aad, ticket, (uint32_t)len, mac, ticket) != 0)
        return TICKET_REJECT;
    *out_len = len;
    return i == 0 ? TICKET_OK : TICKET_CREATE; /* an older key's: a new ticket follows */
}

static int ticket_callback(void *ssl, unsigned char *name, unsigned char *iv,
                           unsigned char *mac, int enc, unsigned char *ticket, int in_len,
                           int *out_len, void *ctx) {
    (void)ssl;
    struct hp_ticket_ring *r = ctx;
    if (!r || in_len < 0) return TICKET_FATAL;
    return enc ? ticket_seal(r, name, iv, mac, ticket, in_len, out_len)
               : ticket_open(r, name, iv, mac, ticket, in_len, out_len);
}

/* Seal and open ctx's session tickets with the ring (a WOLFSSL_CTX*). */
HP_EXPORT int hp_ticket_ring_attach(struct hp_ticket_ring *r, void *ctx) {
    if (!r || !ctx) return -EINVAL;
    if (r->set_cb(ctx, ticket_callback) != 1 || r->set_ctx(ctx, r) != 1) return -EIO;
    return 0;
}

/* Forget the keys and free the ring (no context may use it any more). */
HP_EXPORT void hp_ticket_ring_free(struct hp_ticket_ring *r) {
    if (!r) return;
    explicit_bzero(r, sizeof *r);
    free(r);
}
