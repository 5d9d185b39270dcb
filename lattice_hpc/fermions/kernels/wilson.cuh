// Fused Wilson(-clover) hopping kernels: ONE source for the CPU (g++ -O3 -fopenmp, called through
// ctypes, lattice_hpc/fermions/kernels/cpu.py) and the GPU (NVRTC through cupy.RawModule,
// lattice_hpc/fermions/kernels/cuda.py), appended to lattice_hpc/compiled/common.cuh (macros,
// complex numbers).  Its prelude defines `real` (double or float), RECON (18: links stored whole,
// 12: their first two rows) and the Dirac-matrix tables perm_of and ipow_of, generated from
// lattice_hpc/fermions/gamma.py, so the DeGrand-Rossi matrices are written in one place only.
//
// What is computed (the same contract as the reference, lattice_hpc/fermions/wilson.py):
//
//     out(x) = alpha * B(x) chi(x) + beta * C(x) [H psi](x)      for x of the requested parity,
//     out(x) = 0                                                  for x of the other parity,
//     H psi(x) = sum_mu (1 - s gamma_mu) U_mu(x) psi(x+mu) + (1 + s gamma_mu) U_mu(x-mu)^dag psi(x-mu)
//
// with s = +1 (D) or -1 (D^dag), B and C optional site-diagonal clover blocks (two 6x6 chiral
// blocks per site, spins {0,1} and {2,3} with their colours; absent = identity), and hops across the
// global boundary of direction mu multiplied by the phase bc[mu] (forward) or conj(bc[mu]) (backward).
//
// Spin projection (DeGrand-Rossi, every gamma_mu has one non-zero per row, a power of i):
// gamma_mu[a][perm_of(mu, a)] = i^ipow_of(mu, a).  The half spinor of (1 - s gamma_mu) psi is rows 0, 1:
//     h_a = psi_a - s i^ipow_of(mu, a) psi_{perm_of(mu, a)},     a = 0, 1,
// and rows 2, 3 are rebuilt as row_{perm_of(mu, a)} = -s i^ipow_of(mu, perm_of(mu, a)) h_a.  The colour
// matrix multiplies the half spinor only: 2 x (3x3 times 3) per hop instead of 4.
//
// Layouts (site index s in memory order: t slowest, x fastest, no halo):
//     psi, chi, out: [V][4 spin][3 colour] complex       U: [4 mu][V][3 or 2 rows][3] complex
//     B, C: [V][2 chiral blocks][18] packed Hermitian    face buffers: [V / L_mu][2][3] complex
// geom = {Lx, Ly, Lz, Lt, partitioned mask, upper global boundary mask, lower global boundary mask,
//         parity of the block origin}.  Directions in `partitioned` are not wrapped here: their
// face sites get the neighbours' contributions from the face kernels, after the exchange.
//
// Work split: `dslash_bulk` visits every site (parity < 0) or every pair (2 xh, 2 xh + 1) of sites
// along x, of which it computes the one of the requested parity and zeroes the other; `pack_face`
// writes the half spinors that a neighbour needs; `face_add` adds the received ones.
//
// Two bodies of `dslash_bulk`, the same hops in the same order.  The GPU: one thread per work
// item, scalar complex arithmetic (`bulk_site`; also built for the CPU as `dslash_bulk_items`, so
// the tests check it there).  The CPU (`#if !defined(__CUDACC__)`): rows along x shared by the
// OpenMP threads, coordinates counted, the arithmetic on pairs of complex numbers (`bulk_site_cpu`,
// vector extensions; 2.4x faster at 16^4 than the scalar body under g++).  The face kernels are
// small and share the scalar code.


// i^k z for k = 0..3 (k is a compile-time constant once the mu loop is unrolled)
DEV cplx ipow(int k, cplx z) {
  return k == 0 ? z : k == 1 ? mk(-z.im, z.re) : k == 2 ? mk(-z.re, -z.im) : mk(z.im, -z.re);
}

struct Geom { long L[4], stride[4], V; int part, upper, lower, origin_parity; };
DEV Geom geometry(const int* g) {
  Geom G;
  long st = 1;
  for (int mu = 0; mu < 4; ++mu) { G.L[mu] = g[mu]; G.stride[mu] = st; st *= g[mu]; }
  G.V = st; G.part = g[4]; G.upper = g[5]; G.lower = g[6]; G.origin_parity = g[7];
  return G;
}
DEV void coords(const Geom& G, long s, int* c) {
  for (int mu = 0; mu < 4; ++mu) { c[mu] = (int)(s % G.L[mu]); s /= G.L[mu]; }
}
DEV int site_parity(const Geom& G, const int* c) {
  return (c[0] + c[1] + c[2] + c[3] + G.origin_parity) & 1;
}

// Half spinor of (1 - s gamma_mu) psi: h[a][c], a = 0, 1.
DEV void project(int mu, real s, const cplx* psi, cplx h[2][3]) {
UNROLL
  for (int a = 0; a < 2; ++a)
UNROLL
    for (int c = 0; c < 3; ++c)
      h[a][c] = psi[3 * a + c] - s * ipow(ipow_of(mu, a), psi[3 * perm_of(mu, a) + c]);
}
// acc += (1 - s gamma_mu) rebuilt from its half spinor h.
DEV void reconstruct(int mu, real s, const cplx h[2][3], cplx* acc) {
UNROLL
  for (int a = 0; a < 2; ++a) {
    const int b = perm_of(mu, a);
UNROLL
    for (int c = 0; c < 3; ++c) {
      acc[3 * a + c] = acc[3 * a + c] + h[a][c];
      acc[3 * b + c] = acc[3 * b + c] - s * ipow(ipow_of(mu, b), h[a][c]);
    }
  }
}
// The link U_mu(s): 18 reals stored (RECON 18), or its first two rows only (RECON 12, 1/3 fewer
// bytes), the third rebuilt as conj(row0 x row1), exact for SU(3) (Clark et al., arXiv:0911.3191).
DEV void load_link(const cplx* U, int mu, long s, long V, cplx m[3][3]) {
  const cplx* p = U + (RECON / 2) * (mu * V + s);
UNROLL
  for (int i = 0; i < RECON / 6; ++i)
UNROLL
    for (int j = 0; j < 3; ++j) m[i][j] = p[3 * i + j];
#if RECON == 12
  m[2][0] = conj(m[0][1] * m[1][2] - m[0][2] * m[1][1]);
  m[2][1] = conj(m[0][2] * m[1][0] - m[0][0] * m[1][2]);
  m[2][2] = conj(m[0][0] * m[1][1] - m[0][1] * m[1][0]);
#endif
}

// out = U h (dag = 0) or U^dag h (dag = 1), for both spins of the half spinor.
DEV void colour(const cplx U[3][3], int dag, const cplx h[2][3], cplx out[2][3]) {
UNROLL
  for (int a = 0; a < 2; ++a)
UNROLL
    for (int i = 0; i < 3; ++i) {
      cplx z = mk(0, 0);
UNROLL
      for (int j = 0; j < 3; ++j)
        z = z + (dag ? conj_mul(U[j][i], h[a][j]) : U[i][j] * h[a][j]);
      out[a][i] = z;
    }
}
DEV void scale(cplx h[2][3], cplx ph) {
  if (ph.re == 1 && ph.im == 0) return;
UNROLL
  for (int a = 0; a < 2; ++a)
UNROLL
    for (int c = 0; c < 3; ++c) h[a][c] = ph * h[a][c];
}
// y = M v for the two Hermitian 6x6 chiral blocks of one site, stored packed: per block 18
// complex slots, the first 3 holding the 6 real diagonal entries in pairs (re, im = d0, d1 ...),
// then the 15 entries below the diagonal, row by row ((1,0), (2,0), (2,1), (3,0), ...): half the
// bytes of the full blocks (openQCD's pauli fields store the same 36 reals).
DEV void blocks(const cplx* M, const cplx* v, cplx* y) {
UNROLL
  for (int b = 0; b < 2; ++b) {
    const cplx* p = M + 18 * b;
    const cplx* w = v + 6 * b;
    cplx* z = y + 6 * b;
UNROLL
    for (int i = 0; i < 3; ++i) {
      z[2 * i] = p[i].re * w[2 * i];
      z[2 * i + 1] = p[i].im * w[2 * i + 1];
    }
    int k = 3;
UNROLL
    for (int i = 1; i < 6; ++i)
UNROLL
      for (int j = 0; j < i; ++j, ++k) {
        z[i] = z[i] + p[k] * w[j];
        z[j] = z[j] + conj_mul(p[k], w[i]);
      }
  }
}

// out(s) = alpha B chi(s) + beta C acc, the last step of every site.
DEV void finish(cplx* out, long s, cplx* acc, const cplx* chi, const cplx* B, const cplx* C,
                real alpha, real beta, int has_B, int has_C) {
  cplx t[12], r[12];
  if (has_C) { blocks(C + 36 * s, acc, t); } else { for (int k = 0; k < 12; ++k) t[k] = acc[k]; }
  for (int k = 0; k < 12; ++k) r[k] = beta * t[k];
  if (alpha != 0) {
    if (has_B) { blocks(B + 36 * s, chi + 12 * s, t); }
    else { for (int k = 0; k < 12; ++k) t[k] = chi[12 * s + k]; }
    for (int k = 0; k < 12; ++k) r[k] = r[k] + alpha * t[k];
  }
  for (int k = 0; k < 12; ++k) out[12 * s + k] = r[k];
}

DEV void bulk_site(long s, const int* c, cplx* out, const cplx* psi, const cplx* chi,
                   const cplx* U, const cplx* B, const cplx* C, const Geom& G, const real* bc,
                   int dagger, real alpha, real beta, int has_B, int has_C) {
  const real sf = dagger ? -1 : 1;
  cplx acc[12];
  for (int k = 0; k < 12; ++k) acc[k] = mk(0, 0);
  cplx h[2][3], uh[2][3], link[3][3];
UNROLL
  for (int mu = 0; mu < 4; ++mu) {
    const long L = G.L[mu], st = G.stride[mu];
    const int cut = (G.part >> mu) & 1;
    const cplx phase = mk(bc[2 * mu], bc[2 * mu + 1]);
    if (c[mu] < L - 1 || !cut) {  // forward: (1 - s gamma_mu) U_mu(x) psi(x + mu)
      const int wrap = c[mu] == L - 1;
      const long nb = wrap ? s - (L - 1) * st : s + st;
      project(mu, sf, psi + 12 * nb, h);
      load_link(U, mu, s, G.V, link);
      colour(link, 0, h, uh);
      if (wrap) scale(uh, phase);
      reconstruct(mu, sf, uh, acc);
    }
    if (c[mu] > 0 || !cut) {  // backward: (1 + s gamma_mu) U_mu(x - mu)^dag psi(x - mu)
      const int wrap = c[mu] == 0;
      const long nb = wrap ? s + (L - 1) * st : s - st;
      project(mu, -sf, psi + 12 * nb, h);
      load_link(U, mu, nb, G.V, link);
      colour(link, 1, h, uh);
      if (wrap) scale(uh, conj(phase));
      reconstruct(mu, -sf, uh, acc);
    }
  }
  finish(out, s, acc, chi, B, C, alpha, beta, has_B, has_C);
}

#if !defined(__CUDACC__)
// ---- CPU: the same hops on short vectors -------------------------------------------------------
// A v4 holds two complex numbers, (z0, z1) = (re0, im0, re1, im1): the two spins of a half spinor
// (or spins 0, 1 / 2, 3 of the accumulator) at one colour.  So a hop is 3 projections, 9 complex
// multiplications of a link entry by a pair (two fused multiply-adds each, the entry broadcast),
// and 3 reconstructions, all on whole vectors (AVX2 in double, SSE in single): g++ does not
// vectorise the scalar complex code above by itself (it is 4x the instructions).  GCC/Clang vector
// extensions, plain C++ otherwise; the GPU keeps the scalar code (one thread per site).
typedef real v4 __attribute__((vector_size(4 * sizeof(real))));
DEV v4 pair(cplx a, cplx b) { v4 r = {a.re, a.im, b.re, b.im}; return r; }
DEV v4 splat(real x) { v4 r = {x, x, x, x}; return r; }
DEV v4 swap_halves(v4 v) { v4 r = {v[2], v[3], v[0], v[1]}; return r; }
// (i^k0 z0, i^k1 z1): a swap of re and im where k is odd, then signs (k is a constant here).
DEV v4 ipow_pair(int k0, int k1, v4 v) {
  v4 r = {k0 & 1 ? v[1] : v[0], k0 & 1 ? v[0] : v[1], k1 & 1 ? v[3] : v[2], k1 & 1 ? v[2] : v[3]};
  v4 sg = {(real)(k0 == 1 || k0 == 2 ? -1 : 1), (real)(k0 >= 2 ? -1 : 1),
           (real)(k1 == 1 || k1 == 2 ? -1 : 1), (real)(k1 >= 2 ? -1 : 1)};
  return sg * r;
}
// h[c] = (h_0c, h_1c): the half spinor of (1 - s gamma_mu) psi, as project() above.
DEV void project_v(int mu, real s, const cplx* psi, v4 h[3]) {
  const int p0 = perm_of(mu, 0), p1 = perm_of(mu, 1);
  const v4 ss = splat(s);
  UNROLL
  for (int c = 0; c < 3; ++c)
    h[c] = pair(psi[c], psi[3 + c])
           - ss * ipow_pair(ipow_of(mu, 0), ipow_of(mu, 1), pair(psi[3 * p0 + c], psi[3 * p1 + c]));
}
// up[c] += h[c], lo[c] += rows 2, 3 of (1 - s gamma_mu) rebuilt from h, as reconstruct() above.
// Rows 0, 1 of a DeGrand-Rossi gamma_mu point into rows 2, 3 (the chiral blocks are off-diagonal).
DEV void reconstruct_v(int mu, real s, const v4 h[3], v4 up[3], v4 lo[3]) {
  const int swap = perm_of(mu, 0) != 2;  // row 2 is rebuilt from h_1, row 3 from h_0
  const v4 ss = splat(s);
  UNROLL
  for (int c = 0; c < 3; ++c) {
    up[c] += h[c];
    lo[c] -= ss * ipow_pair(ipow_of(mu, 2), ipow_of(mu, 3), swap ? swap_halves(h[c]) : h[c]);
  }
}
// out = U h (dag = 0) or U^dag h (dag = 1): u z = re(u) z + im(u) (i z), conj(u) z = re(u) z - im(u) (i z).
DEV void colour_v(const cplx U[3][3], int dag, const v4 h[3], v4 out[3]) {
  v4 ih[3];
  UNROLL
  for (int j = 0; j < 3; ++j) ih[j] = ipow_pair(1, 1, h[j]);
  UNROLL
  for (int i = 0; i < 3; ++i) {
    v4 z = splat(0);
    UNROLL
    for (int j = 0; j < 3; ++j) {
      const cplx u = dag ? U[j][i] : U[i][j];
      z += splat(u.re) * h[j];
      z = dag ? z - splat(u.im) * ih[j] : z + splat(u.im) * ih[j];
    }
    out[i] = z;
  }
}
DEV void scale_v(v4 h[3], cplx ph) {
  if (ph.re == 1 && ph.im == 0) return;
  UNROLL
  for (int c = 0; c < 3; ++c) h[c] = splat(ph.re) * h[c] + splat(ph.im) * ipow_pair(1, 1, h[c]);
}

// bulk_site below, on vectors.
DEV void bulk_site_cpu(long s, const int* c, cplx* __restrict__ out, const cplx* __restrict__ psi,
                       const cplx* __restrict__ chi, const cplx* __restrict__ U, const cplx* B,
                       const cplx* C, const Geom& G, const real* bc, int dagger, real alpha,
                       real beta, int has_B, int has_C) {
  const real sf = dagger ? -1 : 1;
  v4 up[3], lo[3], h[3], uh[3];
  cplx link[3][3];
  UNROLL
  for (int k = 0; k < 3; ++k) up[k] = lo[k] = splat(0);
  UNROLL
  for (int mu = 0; mu < 4; ++mu) {
    const long L = G.L[mu], st = G.stride[mu];
    const int cut = (G.part >> mu) & 1;
    const cplx phase = mk(bc[2 * mu], bc[2 * mu + 1]);
    if (c[mu] < L - 1 || !cut) {  // forward: (1 - s gamma_mu) U_mu(x) psi(x + mu)
      const int wrap = c[mu] == L - 1;
      const long nb = wrap ? s - (L - 1) * st : s + st;
      project_v(mu, sf, psi + 12 * nb, h);
      load_link(U, mu, s, G.V, link);
      colour_v(link, 0, h, uh);
      if (wrap) scale_v(uh, phase);
      reconstruct_v(mu, sf, uh, up, lo);
    }
    if (c[mu] > 0 || !cut) {  // backward: (1 + s gamma_mu) U_mu(x - mu)^dag psi(x - mu)
      const int wrap = c[mu] == 0;
      const long nb = wrap ? s + (L - 1) * st : s - st;
      project_v(mu, -sf, psi + 12 * nb, h);
      load_link(U, mu, nb, G.V, link);
      colour_v(link, 1, h, uh);
      if (wrap) scale_v(uh, conj(phase));
      reconstruct_v(mu, -sf, uh, up, lo);
    }
  }
  if (alpha == 0 && !has_C) {  // the plain hop: out = beta acc, straight from the vectors
    const v4 b = splat(beta);
    cplx* o = out + 12 * s;
    UNROLL
    for (int k = 0; k < 3; ++k) {
      const v4 u = b * up[k], l = b * lo[k];
      o[k] = mk(u[0], u[1]); o[3 + k] = mk(u[2], u[3]);
      o[6 + k] = mk(l[0], l[1]); o[9 + k] = mk(l[2], l[3]);
    }
    return;
  }
  cplx acc[12];
  UNROLL
  for (int k = 0; k < 3; ++k) {
    acc[k] = mk(up[k][0], up[k][1]); acc[3 + k] = mk(up[k][2], up[k][3]);
    acc[6 + k] = mk(lo[k][0], lo[k][1]); acc[9 + k] = mk(lo[k][2], lo[k][3]);
  }
  finish(out, s, acc, chi, B, C, alpha, beta, has_B, has_C);
}
#endif

// Site `i` of the loop: every site (parity < 0), or the pair (2i, 2i+1) along x.
DEV long pick(const Geom& G, long i, int parity, long* other) {
  if (parity < 0) { *other = -1; return i; }
  int c[4];
  coords(G, 2 * i, c);
  const long s0 = 2 * i;
  if (site_parity(G, c) == parity) { *other = s0 + 1; return s0; }
  *other = s0; return s0 + 1;
}

// n = V (parity < 0) or V / 2.  The GPU's `dslash_bulk`, one work item per thread; the CPU library
// holds the same function as `dslash_bulk_items` (its own `dslash_bulk` is the one below), so the
// tests check the GPU's body against the reference where there is no GPU.
#if defined(__CUDACC__)
#define BULK_ITEMS dslash_bulk
#else
#define BULK_ITEMS dslash_bulk_items
#endif
KERNEL BULK_ITEMS(cplx* out, const cplx* psi, const cplx* chi, const cplx* U, const cplx* B,
                  const cplx* C, const int* geom, const real* bc, int parity, int dagger,
                  real alpha, real beta, int has_B, int has_C, long n) {
  SITE_LOOP(i, n) {
    const Geom G = geometry(geom);
    long other;
    const long s = pick(G, i, parity, &other);
    int c[4];
    coords(G, s, c);
    bulk_site(s, c, out, psi, chi, U, B, C, G, bc, dagger, alpha, beta, has_B, has_C);
    if (other >= 0)
      for (int k = 0; k < 12; ++k) out[12 * other + k] = mk(0, 0);
  }
}
#if !defined(__CUDACC__)
// The CPU visits the same sites row by row: threads share the rows (y, z, t), each row runs
// along x, contiguous in memory, with the coordinates counted rather than divided out of s.
KERNEL dslash_bulk(cplx* out, const cplx* psi, const cplx* chi, const cplx* U, const cplx* B,
                   const cplx* C, const int* geom, const real* bc, int parity, int dagger,
                   real alpha, real beta, int has_B, int has_C, long n) {
  (void)n;
  const Geom G = geometry(geom);
  const long Lx = G.L[0], rows = G.V / Lx;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; ++r) {
    int c[4];
    coords(G, r * Lx, c);
    const int p0 = site_parity(G, c);
    for (int x = 0; x < Lx; ++x) {
      const long s = r * Lx + x;
      c[0] = x;
      if (parity < 0 || ((p0 + x) & 1) == parity)
        bulk_site_cpu(s, c, out, psi, chi, U, B, C, G, bc, dagger, alpha, beta, has_B, has_C);
      else
        for (int k = 0; k < 12; ++k) out[12 * s + k] = mk(0, 0);
    }
  }
}
#endif

// Site of face index f of the face x_mu = (side ? L_mu - 1 : 0), other coordinates in memory
// order; -1 if the site is not of `parity` (parity < 0: every site is).
DEV long face_site(const Geom& G, int mu, int side, int parity, long f) {
  int c[4];
  long s = 0;
  for (int nu = 0; nu < 4; ++nu) {
    if (nu == mu) { c[nu] = side ? (int)G.L[nu] - 1 : 0; }
    else { c[nu] = (int)(f % G.L[nu]); f /= G.L[nu]; }
    s += c[nu] * G.stride[nu];
  }
  return parity < 0 || site_parity(G, c) == parity ? s : -1;
}

// side 0 (lower face, for the neighbour at -mu): buf = P_f psi; side 1 (upper face, for +mu):
// buf = U_mu^dag P_b psi.  Only sites of `parity` (all if < 0) are written.  n = V / L_mu.
KERNEL pack_face(cplx* buf, const cplx* psi, const cplx* U, const int* geom, int mu, int side,
                 int parity, int dagger, long n) {
  SITE_LOOP(f, n) {
    const Geom G = geometry(geom);
    const long s = face_site(G, mu, side, parity, f);
    if (s >= 0) {
      const real sf = dagger ? -1 : 1;
      cplx h[2][3], uh[2][3], link[3][3];
      if (side == 0) {
        project(mu, sf, psi + 12 * s, h);
        for (int a = 0; a < 2; ++a) for (int k = 0; k < 3; ++k) buf[6 * f + 3 * a + k] = h[a][k];
      } else {
        project(mu, -sf, psi + 12 * s, h);
        load_link(U, mu, s, G.V, link);
        colour(link, 1, h, uh);
        for (int a = 0; a < 2; ++a) for (int k = 0; k < 3; ++k) buf[6 * f + 3 * a + k] = uh[a][k];
      }
    }
  }
}

// side 1 (upper face sites, receiving the lower face of +mu): out += beta C (1 - s gamma) U h;
// side 0 (lower face sites, receiving the upper face of -mu): out += beta C (1 + s gamma) h.
KERNEL face_add(cplx* out, const cplx* buf, const cplx* U, const cplx* C, const int* geom,
                const real* bc, int mu, int side, int parity, int dagger, real beta, int has_C,
                long n) {
  SITE_LOOP(f, n) {
    const Geom G = geometry(geom);
    const long s = face_site(G, mu, side, parity, f);
    if (s >= 0) {
      const real sf = dagger ? -1 : 1;
      cplx h[2][3], uh[2][3], link[3][3], acc[12], t[12];
      for (int k = 0; k < 12; ++k) acc[k] = mk(0, 0);
      for (int a = 0; a < 2; ++a) for (int k = 0; k < 3; ++k) h[a][k] = buf[6 * f + 3 * a + k];
      const cplx phase = mk(bc[2 * mu], bc[2 * mu + 1]);
      if (side == 1) {
        load_link(U, mu, s, G.V, link);
        colour(link, 0, h, uh);
        if ((G.upper >> mu) & 1) scale(uh, phase);
        reconstruct(mu, sf, uh, acc);
      } else {
        if ((G.lower >> mu) & 1) scale(h, conj(phase));
        reconstruct(mu, -sf, h, acc);
      }
      if (has_C) { blocks(C + 36 * s, acc, t); } else { for (int k = 0; k < 12; ++k) t[k] = acc[k]; }
      for (int k = 0; k < 12; ++k) out[12 * s + k] = out[12 * s + k] + beta * t[k];
    }
  }
}
