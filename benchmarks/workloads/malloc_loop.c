/* The malloc_loop workload's native part: many small malloc/free pairs from C, no Python in between.
 *
 * A ring of live blocks keeps the compiler from pairing each malloc with its free and deleting both (GCC does that
 * for an unused allocation), and makes the pattern realistic: a few blocks alive, sizes varying from 16 to 271.
 * Returns a checksum so the work cannot be optimized away, or -1 if malloc failed. */
#include <stdlib.h>

#define RING 64

long filbench_churn(long count) {
    char *ring[RING] = {0};
    long checksum = 0;
    for (long i = 0; i < count; i++) {
        size_t slot = (size_t)i % RING;
        free(ring[slot]);
        ring[slot] = malloc(16 + (size_t)(i % 256));
        if (ring[slot] == NULL) {
            checksum = -1;
            break;
        }
        ring[slot][0] = (char)i;
        checksum += ring[slot][0];
    }
    for (size_t slot = 0; slot < RING; slot++) {
        free(ring[slot]);
    }
    return checksum;
}
