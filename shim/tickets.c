/*
 * tickets.c — TLS session-ticket keys shared by several gateways.
 *
 * wolfSSL's own ticket keys are random per process, so a ticket issued by
 * one gateway cannot be opened by another. This ring holds keys given from
 * JavaScript (the same on every gateway that shares them): new tickets are
 * sealed with the current key (ChaCha20-Poly1305 from wolfCrypt), and
 * tickets sealed with any key still in the ring are accepted; in TLS 1.2 one
 * sealed with an older key than the current is accepted and replaced by a
 * new one (TLS 1.3 resumes only on OK, and issues new tickets anyway).
 *
 * The tag goes at the end of the encrypted part (wolfSSL leaves 32 bytes of
 * room there), never in wolfSSL's separate mac field: when a ticket is
 * opened, the encrypted part is within the received bytes whatever length
 * the ticket claims, but the mac field after it may not be.
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
typedef int (*version_fn)(void *ssl);

#define TLS1_3_VERSION 0x0304

struct hp_ticket_ring {
    int count; /* keys in use; key 0 seals new tickets */
    uint8_t name[RING_KEYS][NAME_SIZE];
    uint8_t key[RING_KEYS][KEY_SIZE];
    aead_encrypt_fn encrypt;
    aead_decrypt_fn decrypt;
    set_cb_fn set_cb;
    set_ctx_fn set_ctx;
    version_fn version;
};

/* Look up what the ring needs in the wolfSSL at path (already loaded). */
static int ring_bind(struct hp_ticket_ring *r, const char *path) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (!lib) return -ENOENT;
    r->encrypt = (aead_encrypt_fn)dlsym(lib, "wc_ChaCha20Poly1305_Encrypt");
    r->decrypt = (aead_decrypt_fn)dlsym(lib, "wc_ChaCha20Poly1305_Decrypt");
    r->set_cb = (set_cb_fn)dlsym(lib, "wolfSSL_CTX_set_TicketEncCb");
    r->set_ctx = (set_ctx_fn)dlsym(lib, "wolfSSL_CTX_set_TicketEncCtx");
    r->version = (version_fn)dlsym(lib, "wolfSSL_version");
    dlclose(lib); /* Deno's own handle keeps it loaded */
    return r->encrypt && r->decrypt && r->set_cb && r->set_ctx && r->version ? 0 : -ENOSYS;
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
 * first seals new tickets. Returns 0, or -EINVAL with the keys in use left
 * as they were: no key at all is refused too (an empty ring fails every
 * handshake that issues a ticket). */
HP_EXPORT int hp_ticket_ring_set(struct hp_ticket_ring *r, const uint8_t *keys, int count) {
    if (!r || !keys || count < 1 || count > RING_KEYS) return -EINVAL;
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

/* The associated data: the key's name, the IV and the sealed length. */
static void ticket_aad(uint8_t *aad, const unsigned char *name, const unsigned char *iv,
                       int len) {
    memcpy(aad, name, NAME_SIZE);
    memcpy(aad + NAME_SIZE, iv, IV_SIZE);
    aad[NAME_SIZE + IV_SIZE] = (uint8_t)(len >> 8);
    aad[NAME_SIZE + IV_SIZE + 1] = (uint8_t)len;
}

/* Seal len bytes in place; the tag follows them (*out_len has the room). */
static int ticket_seal(struct hp_ticket_ring *r, unsigned char *name, unsigned char *iv,
                       unsigned char *mac, unsigned char *ticket, int len, int *out_len) {
    uint8_t aad[NAME_SIZE + IV_SIZE + 2];
    if (r->count == 0) return TICKET_FATAL; /* given keys before use, never emptied */
    if (len > 65535 - TAG_SIZE || *out_len < len + TAG_SIZE) return TICKET_FATAL;
    memcpy(name, r->name[0], NAME_SIZE);
    if (getrandom(iv, IV_SIZE, 0) != IV_SIZE) return TICKET_FATAL;
    ticket_aad(aad, name, iv, len);
    if (r->encrypt(r->key[0], iv, aad, sizeof aad, ticket, (uint32_t)len, ticket,
                   ticket + len) != 0)
        return TICKET_FATAL;
    /* wolfSSL wants its mac field set; it is never read back (the tag in
     * the encrypted part is what counts): a copy of the tag, twice. */
    memcpy(mac, ticket + len, TAG_SIZE);
    memcpy(mac + TAG_SIZE, ticket + len, TAG_SIZE);
    *out_len = len + TAG_SIZE;
    return TICKET_OK;
}

/* Open in place the len bytes wolfSSL read (sealed bytes, then the tag). */
static int ticket_open(struct hp_ticket_ring *r, void *ssl, unsigned char *name,
                       unsigned char *iv, unsigned char *ticket, int len, int *out_len) {
    uint8_t aad[NAME_SIZE + IV_SIZE + 2];
    int i = ring_find(r, name);
    if (i < 0 || len <= TAG_SIZE) return TICKET_REJECT; /* a key no longer (or never) here */
    int sealed = len - TAG_SIZE;
    ticket_aad(aad, name, iv, sealed);
    if (r->decrypt(r->key[i], iv, aad, sizeof aad, ticket, (uint32_t)sealed, ticket + sealed,
                   ticket) != 0)
        return TICKET_REJECT;
    *out_len = sealed;
    if (i == 0 || r->version(ssl) >= TLS1_3_VERSION) return TICKET_OK;
    return TICKET_CREATE; /* TLS 1.2, an older key's ticket: a new ticket follows */
}

static int ticket_callback(void *ssl, unsigned char *name, unsigned char *iv,
                           unsigned char *mac, int enc, unsigned char *ticket, int in_len,
                           int *out_len, void *ctx) {
    struct hp_ticket_ring *r = ctx;
    if (!r || in_len < 0) return TICKET_FATAL;
    return enc ? ticket_seal(r, name, iv, mac, ticket, in_len, out_len)
               : ticket_open(r, ssl, name, iv, ticket, in_len, out_len);
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
