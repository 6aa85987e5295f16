#include "kernels/common/tt_conv_dsp.h"

int32_t tt_dsp_paths_enabled(void) { return TT_HAVE_DSP; }

#if TT_HAVE_DSP

/* Column layout. A set of one or two columns ("width") of `depth` values
 * is stored group by group: the first depth - depth % 4 values in groups
 * of four, each group holding column 0's four values then column 1's; in
 * each column's four, the order is v0 v2 v1 v3, the order in which
 * SXTB16 splits four weights (even bytes, then odd). The last depth % 4
 * values follow, four slots per column, in plain order. */
typedef struct {
  int16_t* values;
  int32_t width;   /* columns: 1 or 2 */
  int32_t grouped; /* depth - depth % 4 */
  int32_t tail;    /* depth % 4 */
} column_set;

static column_set column_set_make(int16_t* values, int32_t width,
                                  int32_t depth) {
  const column_set set = {values, width, depth & ~3, depth & 3};
  return set;
}

/* Where value j of column q is stored. */
static inline int32_t column_slot(const column_set* set, int32_t q, int32_t j) {
  if (j >= set->grouped) {
    return set->grouped * set->width + q * 4 + (j - set->grouped);
  }
  const int32_t lane = j & 3;
  const int32_t swapped = ((lane & 1) << 1) | (lane >> 1);
  return (j - lane) * set->width + q * 4 + swapped;
}

/* Values j .. j + n - 1 of column q: src[0 .. n - 1] plus input_offset. */
static void column_put(const column_set* set, int32_t q, int32_t j,
                       const int8_t* src, int32_t n, int32_t input_offset) {
  const tt_i16x2 offsets = tt_dsp_pair(input_offset);
  while (n > 0) {
    if ((j & 3) == 0 && n >= 4 && j + 4 <= set->grouped) {
      tt_i16x2 even, odd;
      tt_dsp_widen(tt_dsp_load4(src), offsets, &even, &odd);
      int16_t* group = set->values + j * set->width + q * 4;
      tt_dsp_store_pair(group, even);
      tt_dsp_store_pair(group + 2, odd);
      j += 4;
      src += 4;
      n -= 4;
    } else {
      set->values[column_slot(set, q, j)] =
          (int16_t)((int32_t)*src + input_offset);
      ++j;
      ++src;
      --n;
    }
  }
}

/* Column q all zeros (every tap on padding adds nothing). */
static void column_clear(const column_set* set, int32_t q) {
  for (int32_t j = 0; j < set->grouped; j += 4) {
    int16_t* group = set->values + j * set->width + q * 4;
    tt_dsp_store_pair(group, 0);
    tt_dsp_store_pair(group + 2, 0);
  }
  int16_t* tail = set->values + set->grouped * set->width + q * 4;
  for (int32_t t = 0; t < set->tail; ++t) tail[t] = 0;
}

/* Column q from output pixel (out_y, out_x) of `image`: the window's
 * values in filter order ([KH, KW, C_in]), zeros on padding. */
static void column_from_pixel(const column_set* set, int32_t q,
                              const tt_conv_geometry* g, const int8_t* image,
                              int32_t out_y, int32_t out_x,
                              int32_t input_offset) {
  tt_conv_taps taps = tt_conv_pixel_taps_inline(g, out_y, out_x);
  if (taps.rows != g->filter_h || taps.cols != g->filter_w) {
    column_clear(set, q);
  }
  const int32_t span = tt_conv_join_rows(&taps, g->in_c);
  for (int32_t row = 0; row < taps.rows; ++row) {
    for (int32_t piece = 0; piece < taps.cols; ++piece) {
      const int32_t j = taps.filter_start + row * taps.filter_row_step +
                        piece * taps.filter_col_step;
      const int8_t* src = image + taps.input_start + row * taps.input_row_step +
                          piece * taps.input_col_step;
      column_put(set, q, j, src, span, input_offset);
    }
  }
}

/* The four sums of dot_2x2 in registers: filter f, column q in aFQ. */
typedef struct {
  int32_t a00, a01, a10, a11;
} sums_2x2;

/* s + one group of four values: the two filters' weights at f0, f1 and
 * the two columns' widened values at c. */
static inline __attribute__((always_inline)) sums_2x2
group_2x2(sums_2x2 s, const int8_t* f0, const int8_t* f1, const int16_t* c) {
  const uint32_t w0 = tt_dsp_load4(f0);
  const uint32_t w1 = tt_dsp_load4(f1);
  const tt_i16x2 w0_even = tt_dsp_sxtb16(w0);
  const tt_i16x2 w0_odd = tt_dsp_sxtb16_ror8(w0);
  const tt_i16x2 w1_even = tt_dsp_sxtb16(w1);
  const tt_i16x2 w1_odd = tt_dsp_sxtb16_ror8(w1);
  tt_i16x2 even, odd;
  tt_dsp_load_pairs(c, &even, &odd);
  s.a00 = tt_dsp_smlad(even, w0_even, s.a00);
  s.a10 = tt_dsp_smlad(even, w1_even, s.a10);
  s.a00 = tt_dsp_smlad(odd, w0_odd, s.a00);
  s.a10 = tt_dsp_smlad(odd, w1_odd, s.a10);
  tt_dsp_load_pairs(c + 4, &even, &odd);
  s.a01 = tt_dsp_smlad(even, w0_even, s.a01);
  s.a11 = tt_dsp_smlad(even, w1_even, s.a11);
  s.a01 = tt_dsp_smlad(odd, w0_odd, s.a01);
  s.a11 = tt_dsp_smlad(odd, w1_odd, s.a11);
  return s;
}

/* Sums of filters f0 and f1 with both columns of a two-column set. */
static sums_2x2 dot_2x2(const column_set* set, const int8_t* f0,
                        const int8_t* f1) {
  sums_2x2 s = {0, 0, 0, 0};
  const int16_t* c = set->values;
  for (int32_t n = set->grouped >> 2; n > 0; --n) {
    s = group_2x2(s, f0, f1, c);
    f0 += 4;
    f1 += 4;
    c += 8;
  }
  for (int32_t t = 0; t < set->tail; ++t) {
    const int32_t x0 = c[t], x1 = c[4 + t];
    s.a00 = tt_conv_wrapping_add(s.a00, f0[t] * x0);
    s.a01 = tt_conv_wrapping_add(s.a01, f0[t] * x1);
    s.a10 = tt_conv_wrapping_add(s.a10, f1[t] * x0);
    s.a11 = tt_conv_wrapping_add(s.a11, f1[t] * x1);
  }
  return s;
}

/* Sums of filters f[0 .. 3] with the one column of a one-column set. */
typedef struct {
  int32_t a0, a1, a2, a3;
} sums_4x1;

static sums_4x1 dot_4x1(const column_set* set, const int8_t* const f[4]) {
  const int8_t *f0 = f[0], *f1 = f[1], *f2 = f[2], *f3 = f[3];
  int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  const int16_t* c = set->values;
  for (int32_t n = set->grouped >> 2; n > 0; --n) {
    tt_i16x2 even, odd;
    tt_dsp_load_pairs(c, &even, &odd);
    c += 4;
    a0 = tt_dsp_mac4(a0, even, odd, tt_dsp_load4(f0));
    a1 = tt_dsp_mac4(a1, even, odd, tt_dsp_load4(f1));
    a2 = tt_dsp_mac4(a2, even, odd, tt_dsp_load4(f2));
    a3 = tt_dsp_mac4(a3, even, odd, tt_dsp_load4(f3));
    f0 += 4;
    f1 += 4;
    f2 += 4;
    f3 += 4;
  }
  for (int32_t t = 0; t < set->tail; ++t) {
    const int32_t x = c[t];
    a0 = tt_conv_wrapping_add(a0, f0[t] * x);
    a1 = tt_conv_wrapping_add(a1, f1[t] * x);
    a2 = tt_conv_wrapping_add(a2, f2[t] * x);
    a3 = tt_conv_wrapping_add(a3, f3[t] * x);
  }
  const sums_4x1 sums = {a0, a1, a2, a3};
  return sums;
}

/* Output channels first .. first + count - 1 of the columns of `set`
 * (scales[i] is channel first + i's): out[q] receives column q's, each
 * accumulator plus terms[q] before the bias. */
static void columns_times_filters(const column_set* set,
                                  const tt_conv_eval_view* view, int32_t depth,
                                  int32_t first, int32_t count,
                                  const tt_conv_channel_scale* scales,
                                  const int32_t terms[2], int8_t* out[2]) {
  /* Copied into locals: the int8 output stores may alias anything, so
   * values read through pointers would be reloaded after every store. */
  const tt_conv_quant quant = *view->quant;
  int8_t* const out0 = out[0] + first;
  int8_t* const out1 = out[1] + first;
  const int32_t term0 = terms[0], term1 = terms[1];
  const int8_t* const filters = view->filter + first * depth;
  if (set->width == 2) {
    for (int32_t i = 0; i < count; i += 2) {
      const int8_t* f0 = filters + i * depth;
      const bool pair = i + 1 < count;
      const sums_2x2 sum = dot_2x2(set, f0, pair ? f0 + depth : f0);
      out0[i] = tt_conv_scaled_output(&scales[i], &quant,
                                      tt_conv_wrapping_add(sum.a00, term0));
      out1[i] = tt_conv_scaled_output(&scales[i], &quant,
                                      tt_conv_wrapping_add(sum.a01, term1));
      if (pair) {
        out0[i + 1] = tt_conv_scaled_output(
            &scales[i + 1], &quant, tt_conv_wrapping_add(sum.a10, term0));
        out1[i + 1] = tt_conv_scaled_output(
            &scales[i + 1], &quant, tt_conv_wrapping_add(sum.a11, term1));
      }
    }
    return;
  }
  for (int32_t i = 0; i < count; i += 4) {
    const int8_t* quad[4];
    const int32_t n = tt_conv_quad_filters(filters, depth, i, count, quad);
    const sums_4x1 sums = dot_4x1(set, quad);
    const int32_t acc[4] = {sums.a0, sums.a1, sums.a2, sums.a3};
    for (int32_t k = 0; k < n; ++k) {
      out0[i + k] = tt_conv_scaled_output(&scales[i + k], &quant,
                                          tt_conv_wrapping_add(acc[k], term0));
    }
  }
}

/* Channels are taken in chunks whose scales are unpacked once. */
#define CHANNEL_CHUNK 64

static int32_t chunk_scales(const tt_conv_eval_view* view, int32_t first,
                            int32_t channels,
                            tt_conv_channel_scale scales[CHANNEL_CHUNK]) {
  const int32_t count =
      channels - first < CHANNEL_CHUNK ? channels - first : CHANNEL_CHUNK;
  for (int32_t i = 0; i < count; ++i) {
    scales[i] = tt_conv_channel_scale_of(view, first + i);
  }
  return count;
}

bool tt_conv_dsp_supports(const tt_conv_shape* s) {
  return s->filter_depth == s->in_c &&
         (int64_t)s->filter_h * s->filter_w * s->in_c <= TT_CONV_DSP_MAX_DEPTH;
}

void tt_conv_dsp_eval(const tt_conv_shape* s, const tt_conv_geometry* g,
                      const tt_conv_eval_view* view) {
  int16_t values[2 * TT_CONV_DSP_MAX_DEPTH + 8] __attribute__((aligned(8)));
  const int32_t depth = s->filter_h * s->filter_w * s->in_c;
  const int32_t pixels = s->out_h * s->out_w;
  const int32_t total = s->batches * pixels;
  const int32_t image_size = s->in_h * s->in_w * s->in_c;
  const int32_t input_offset = view->quant->input_offset;
  const int32_t no_terms[2] = {0, 0};
  tt_conv_channel_scale scales[CHANNEL_CHUNK];
  for (int32_t first = 0; first < s->out_c; first += CHANNEL_CHUNK) {
    const int32_t count = chunk_scales(view, first, s->out_c, scales);
    for (int32_t p = 0; p < total; p += 2) {
      const int32_t width = p + 1 < total ? 2 : 1;
      const column_set set = column_set_make(values, width, depth);
      int8_t* out[2] = {NULL, NULL};
      for (int32_t q = 0; q < width; ++q) {
        const int32_t b = (p + q) / pixels, in_batch = (p + q) % pixels;
        column_from_pixel(&set, q, g, view->input + b * image_size,
                          in_batch / s->out_w, in_batch % s->out_w,
                          input_offset);
        out[q] = view->output + (p + q) * s->out_c;
      }
      columns_times_filters(&set, view, depth, first, count, scales, no_terms,
                            out);
    }
  }
}

int32_t tt_fc_dsp_rows(int32_t depth) {
  if (depth <= TT_CONV_DSP_MAX_DEPTH) return 2;
  return depth <= 2 * TT_CONV_DSP_MAX_DEPTH ? 1 : 0;
}

void tt_fc_dsp_eval_rows(const tt_conv_eval_view* view, int32_t depth,
                         int32_t units, int32_t first, int32_t count,
                         const int32_t terms[2]) {
  int16_t values[2 * TT_CONV_DSP_MAX_DEPTH + 8] __attribute__((aligned(8)));
  const column_set set = column_set_make(values, count, depth);
  int8_t* out[2] = {NULL, NULL};
  for (int32_t q = 0; q < count; ++q) {
    column_put(&set, q, 0, view->input + (first + q) * depth, depth,
               view->quant->input_offset);
    out[q] = view->output + (first + q) * units;
  }
  tt_conv_channel_scale scales[CHANNEL_CHUNK];
  for (int32_t first_unit = 0; first_unit < units;
       first_unit += CHANNEL_CHUNK) {
    const int32_t count = chunk_scales(view, first_unit, units, scales);
    columns_times_filters(&set, view, depth, first_unit, count, scales, terms,
                          out);
  }
}

#endif
