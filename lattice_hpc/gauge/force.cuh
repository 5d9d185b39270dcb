// The Wilson gauge force for SU(3) in 4D: the compiled counterpart of gauge_force in action.py
// (the reference it is tested against), appended to lattice_hpc/compiled/common.cuh.
//
//     F_mu(x) = -(beta/N) P_TA(U_mu(x) A_mu(x)),
//     A_mu(x) = sum_{nu != mu} U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag
//                            + U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu),
//     P_TA(M) = (M - M^dag)/2 - Tr(M - M^dag)/(2N)
//
// The links are read from the halo-padded field (halo depth h, fresh to codimension 2):
//     links: [4 mu][P_t][P_z][P_y][P_x][3][3] complex, P = L + 2h;   out: [4 mu][V][3][3] interior
// geom = {L_x, L_y, L_z, L_t, h}.

struct M3 { cplx m[9]; };
DEV M3 load3(const cplx* p) { M3 a; for (int k = 0; k < 9; ++k) a.m[k] = p[k]; return a; }
DEV M3 mul(const M3& a, const M3& b) {       // a b
  M3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      c.m[3 * i + j] = a.m[3 * i] * b.m[j] + a.m[3 * i + 1] * b.m[3 + j] + a.m[3 * i + 2] * b.m[6 + j];
  return c;
}
DEV M3 mul_d(const M3& a, const M3& b) {     // a b^dag
  M3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      c.m[3 * i + j] = a.m[3 * i] * conj(b.m[3 * j]) + a.m[3 * i + 1] * conj(b.m[3 * j + 1])
                       + a.m[3 * i + 2] * conj(b.m[3 * j + 2]);
  return c;
}
DEV M3 d_mul(const M3& a, const M3& b) {     // a^dag b
  M3 c;
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 3; ++j)
      c.m[3 * i + j] = conj_mul(a.m[i], b.m[j]) + conj_mul(a.m[3 + i], b.m[3 + j])
                       + conj_mul(a.m[6 + i], b.m[6 + j]);
  return c;
}

KERNEL gauge_force(cplx* out, const cplx* links, const int* geom, real coeff, long n) {
  SITE_LOOP(i, n) {
    const long L[4] = {geom[0], geom[1], geom[2], geom[3]};
    const long h = geom[4];
    long ps[4], PV = 1;
    for (int mu = 0; mu < 4; ++mu) { ps[mu] = PV; PV *= L[mu] + 2 * h; }
    long r = i, p = 0;
    for (int mu = 0; mu < 4; ++mu) { p += (r % L[mu] + h) * ps[mu]; r /= L[mu]; }
#define LINK(mu, site) load3(links + 9 * ((long)(mu) * PV + (site)))
    for (int mu = 0; mu < 4; ++mu) {
      M3 A;
      for (int k = 0; k < 9; ++k) A.m[k] = mk(0, 0);
      for (int nu = 0; nu < 4; ++nu) {
        if (nu == mu) continue;
        const M3 up = mul_d(mul_d(LINK(nu, p + ps[mu]), LINK(mu, p + ps[nu])), LINK(nu, p));
        const M3 down = d_mul(mul(LINK(mu, p - ps[nu]), LINK(nu, p + ps[mu] - ps[nu])), LINK(nu, p - ps[nu]));
        for (int k = 0; k < 9; ++k) A.m[k] = A.m[k] + up.m[k] + down.m[k];
      }
      const M3 M = mul(LINK(mu, p), A);
      cplx tr = mk(0, 0);
      cplx* o = out + 9 * ((long)mu * n + i);
      for (int a = 0; a < 3; ++a)
        for (int b = 0; b < 3; ++b) {
          const cplx d = M.m[3 * a + b] - conj(M.m[3 * b + a]);
          o[3 * a + b] = (real)(-0.5) * coeff * d;
          if (a == b) tr = tr + d;
        }
      for (int a = 0; a < 3; ++a) o[4 * a] = o[4 * a] + ((real)0.5 * coeff / 3) * tr;
    }
#undef LINK
  }
}
