/* Maglev reference for benchmark B7: the paper's populate loop (Eisenbud et al., NSDI'16,
 * Pseudocode 1) with Cilium's offset/skip (MurmurHash3 x64 128 of each backend's hash string).
 * "maglev_ref M SEED" reads the backends' hash strings, one a line, in table order (sorted),
 * builds the M-entry table of IDs 1..N and prints "<CPU microseconds> <FNV-1a 64 of the table as
 * little-endian u32s>" so that the caller can check it built the same table. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ROTL(x, r) (((x) << (r)) | ((x) >> (64 - (r))))
static const uint64_t C1 = 0x87c37b91114253d5ULL, C2 = 0x4cf5ad432745937fULL;

static uint64_t fmix(uint64_t k)
{
	k ^= k >> 33, k *= 0xff51afd7ed558ccdULL, k ^= k >> 33, k *= 0xc4ceb9fe1a85ec53ULL;
	return k ^ (k >> 33);
}

static void murmur3(const uint8_t *d, size_t len, uint32_t seed, uint64_t *o1, uint64_t *o2)
{
	uint64_t h1 = seed, h2 = seed, k1, k2;
	size_t i, n = len / 16;
	for (i = 0; i < n; i++) {
		memcpy(&k1, d + 16 * i, 8), memcpy(&k2, d + 16 * i + 8, 8);
		h1 ^= ROTL(k1 * C1, 31) * C2, h1 = ROTL(h1, 27) + h2, h1 = h1 * 5 + 0x52dce729;
		h2 ^= ROTL(k2 * C2, 33) * C1, h2 = ROTL(h2, 31) + h1, h2 = h2 * 5 + 0x38495ab5;
	}
	k1 = k2 = 0;
	for (i = len & 15; i > 8; i--)
		k2 = (k2 << 8) | d[16 * n + i - 1];
	for (; i > 0; i--)
		k1 = (k1 << 8) | d[16 * n + i - 1];
	if (len & 15) /* zero keys mix to zero, as the tail switch leaves them */
		h2 ^= ROTL(k2 * C2, 33) * C1, h1 ^= ROTL(k1 * C1, 31) * C2;
	h1 ^= len, h2 ^= len, h1 += h2, h2 += h1, h1 = fmix(h1), h2 = fmix(h2);
	*o1 = h1 + h2, *o2 = h2 + h1 + h2;
}

int main(int argc, char **argv)
{
	uint64_t m = argc == 3 ? strtoull(argv[1], NULL, 10) : 0, h1, h2, fnv = 0xcbf29ce484222325ULL;
	uint32_t seed = argc == 3 ? strtoul(argv[2], NULL, 10) : 0, n = 0, cap = 1024, filled = 0;
	char (*names)[128] = malloc(cap * sizeof(*names));
	struct timespec t0, t1;

	if (!m)
		return fprintf(stderr, "usage: maglev_ref M SEED < hash-strings\n"), 2;
	while (fgets(names[n], sizeof(*names), stdin))
		if (names[n][strcspn(names[n], "\n")] = 0, ++n == cap)
			names = realloc(names, (cap *= 2) * sizeof(*names));
	uint64_t *offset = malloc(n * 8), *skip = malloc(n * 8), *next = calloc(n, 8);
	int32_t *entry = malloc(m * 4);
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
	for (uint32_t i = 0; i < n; i++) {
		murmur3((uint8_t *)names[i], strlen(names[i]), seed, &h1, &h2);
		offset[i] = h1 % m, skip[i] = h2 % (m - 1) + 1;
	}
	memset(entry, 0xff, m * 4);
	while (n) /* Pseudocode 1: each backend in turn takes its next unclaimed preference */
		for (uint32_t i = 0; i < n; i++) {
			uint64_t c = (offset[i] + next[i] * skip[i]) % m;
			while (entry[c] >= 0)
				next[i]++, c = (offset[i] + next[i] * skip[i]) % m;
			entry[c] = i + 1, next[i]++;
			if (++filled == m)
				goto done;
		}
done:
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
	for (uint64_t j = 0; j < m; j++)
		for (int b = 0; b < 32; b += 8)
			fnv = (fnv ^ ((uint32_t)entry[j] >> b & 0xff)) * 0x100000001b3ULL;
	printf("%.1f %016llx\n", (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3,
	       (unsigned long long)fnv);
	return 0;
}
