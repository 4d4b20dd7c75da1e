/* Temporary: replaced by the dataset readers. */
#include "dataset.h"
#include "avq.h"
#include <stdlib.h>
void float_matrix_free(float_matrix *m) { free(m->data); m->data = NULL; }
void int_matrix_free(int_matrix *m) { free(m->data); m->data = NULL; }
int dataset_read_float(const char *p, float_matrix *o) { (void)p; (void)o; return AVQ_ERR_UNSUPPORTED; }
int dataset_read_int(const char *p, int_matrix *o) { (void)p; (void)o; return AVQ_ERR_UNSUPPORTED; }
int dataset_write_float(const char *p, const float *d, size_t r, size_t c) { (void)p; (void)d; (void)r; (void)c; return AVQ_ERR_UNSUPPORTED; }
int dataset_write_int(const char *p, const int32_t *d, size_t r, size_t c) { (void)p; (void)d; (void)r; (void)c; return AVQ_ERR_UNSUPPORTED; }
