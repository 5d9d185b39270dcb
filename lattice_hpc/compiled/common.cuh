// Common part of the compiled kernels (lattice_hpc/compiled): one source for the CPU (g++ -O3
// -fopenmp, called through ctypes) and the GPU (NVRTC through cupy.RawModule).  A kernel file is
// appended to this text after the prelude (which defines `real` and the kernel's own constants)
// has replaced the marker below; lattice_hpc/compiled/build.py puts the pieces together.
//
// DEV marks device/inline functions, KERNEL an entry point (extern "C"), SITE_LOOP(i, n) the
// loop over work items: a thread index on the GPU, an OpenMP loop on the CPU.  UNROLL before a
// loop of constant trip count unrolls it on both compilers (g++ ignores `#pragma unroll`), so the
// indices it feeds (spin, colour, direction tables) become compile-time constants.

#if defined(__CUDACC__)
#define DEV __device__ __forceinline__
#define KERNEL extern "C" __global__ void
#define SITE_LOOP(i, n) long i = (long)blockIdx.x * blockDim.x + threadIdx.x; if (i < (n))
#define UNROLL _Pragma("unroll")
#else
#define DEV static inline
#define KERNEL extern "C" void
#define SITE_LOOP(i, n) _Pragma("omp parallel for schedule(static)") for (long i = 0; i < (n); ++i)
#define UNROLL _Pragma("GCC unroll 16")
#endif

// @PRELUDE@

struct cplx { real re, im; };
DEV cplx mk(real re, real im) { cplx z; z.re = re; z.im = im; return z; }
DEV cplx operator+(cplx a, cplx b) { return mk(a.re + b.re, a.im + b.im); }
DEV cplx operator-(cplx a, cplx b) { return mk(a.re - b.re, a.im - b.im); }
DEV cplx operator*(cplx a, cplx b) { return mk(a.re * b.re - a.im * b.im, a.re * b.im + a.im * b.re); }
DEV cplx operator*(real a, cplx b) { return mk(a * b.re, a * b.im); }
DEV cplx conj_mul(cplx a, cplx b) { return mk(a.re * b.re + a.im * b.im, a.re * b.im - a.im * b.re); }
DEV cplx conj(cplx a) { return mk(a.re, -a.im); }

#if !defined(__CUDACC__) && defined(_OPENMP)
#include <omp.h>
extern "C" void set_threads(int n) { omp_set_num_threads(n > 0 ? n : 1); }
#elif !defined(__CUDACC__)
extern "C" void set_threads(int n) { (void)n; }
#endif
