/* Random-forest inference over flattened trees, built by compiled_forest.py with the system C
   compiler (no model code is generated: every model uses this one kernel, its trees are data).

   Node layout (one index space for all trees): info[node] = (left << fbits) | feature and
   thr[node] = the float32 threshold rounded down; a row goes to left + 1 (the right child, always
   stored next to the left one) when x[feature] > thr. A leaf points at itself with thr = +inf,
   so a finished row stays put while the other rows of its block keep walking. */
#include <stdint.h>

enum { LANES = 12 };  /* rows walked together: independent loads overlap (measured best of 6/8/12/16) */

int forest_kernel_version(void) { return 3; }

/* A flattened forest (compiled_forest.py builds it once per model, as a ctypes Structure with
   the same fields in the same order). */
typedef struct {
    const int32_t *info;
    const float *thr;
    const int32_t *roots;
    const double *values;
    int64_t n_trees;
    int64_t n_features;
    int32_t fbits;
    int32_t n_out;
} Forest;

/* acc[row][0..n_out) += sum over trees, in tree order, of values[leaf][0..n_out), rows [start, stop). */
void forest_accumulate(const Forest *forest, const float *x, int64_t start, int64_t stop, double *acc) {
    const int32_t *info = forest->info, *roots = forest->roots;
    const float *thr = forest->thr;
    const double *values = forest->values;
    const int64_t n_trees = forest->n_trees, n_features = forest->n_features;
    const int32_t fbits = forest->fbits, n_out = forest->n_out;
    const int32_t fmask = (1 << fbits) - 1;
    int32_t nodes[LANES];
    if (stop - start < LANES) {
        /* A few rows: the lanes walk LANES trees of one row instead (a lone row has no other rows to
           overlap with); the leaves are added in tree order afterwards, as below. */
        for (int64_t r = start; r < stop; r++) {
            const float *row_x = x + r * n_features;
            double *row = acc + r * n_out;
            for (int64_t t0 = 0; t0 < n_trees; t0 += LANES) {
                const int k = (int)((n_trees - t0) < LANES ? (n_trees - t0) : LANES);
                for (int j = 0; j < k; j++) nodes[j] = roots[t0 + j];
                int moving = 1;
                while (moving) {
                    moving = 0;
                    for (int j = 0; j < k; j++) {
                        const int32_t node = nodes[j], packed = info[node];
                        const int32_t next = (packed >> fbits) + (row_x[packed & fmask] > thr[node]);
                        moving |= next != node;
                        nodes[j] = next;
                    }
                }
                for (int j = 0; j < k; j++) {
                    const double *leaf = values + (int64_t)nodes[j] * n_out;
                    for (int32_t c = 0; c < n_out; c++) row[c] += leaf[c];
                }
            }
        }
        return;
    }
    for (int64_t t = 0; t < n_trees; t++) {
        for (int64_t s = start; s < stop; s += LANES) {
            const int k = (int)((stop - s) < LANES ? (stop - s) : LANES);
            for (int j = 0; j < k; j++) nodes[j] = roots[t];
            int moving = 1;
            while (moving) {
                moving = 0;
                for (int j = 0; j < k; j++) {
                    const int32_t node = nodes[j], packed = info[node];
                    const int32_t next = (packed >> fbits)
                        + (x[(s + j) * n_features + (packed & fmask)] > thr[node]);
                    moving |= next != node;
                    nodes[j] = next;
                }
            }
            for (int j = 0; j < k; j++) {
                const double *leaf = values + (int64_t)nodes[j] * n_out;
                double *row = acc + (s + j) * n_out;
                for (int32_t c = 0; c < n_out; c++) row[c] += leaf[c];
            }
        }
    }
}
