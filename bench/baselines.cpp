/*
 * baselines.cpp -- the other side of avq's recall/QPS comparison: hnswlib
 * (graph) and FAISS IVF-PQ fast-scan with exact refinement (the FAISS setup
 * closest to ScaNN's partition + 4-bit PQ + reorder), on the same files and
 * under the same rules as avq's own benchmark.
 *
 * Why this way:
 *  - C++ and g++ -O3 -march=native, because both libraries are C++ and
 *    hnswlib is header-only: compiling it natively here is what its users do
 *    and is the fairest setting for it.  (The avq library itself is never
 *    built with -march=native; it dispatches at run time.)  FAISS comes from
 *    Debian's libfaiss-dev, a generic build -- its fast-scan kernel has no
 *    AVX2 code -- and the program says so in its output.
 *  - Cosine similarity = normalise base and queries, then inner product,
 *    exactly as avq does it, so all systems search the same vectors.
 *  - The headline numbers are single-thread, one query at a time (nq = 1 per
 *    call), k = 10, recall@10 = |found ∩ true top-10| / 10 averaged over the
 *    queries: the latency-bound setting ann-benchmarks uses.  One extra row
 *    per index is a batched 2-thread run at the fastest setting that reaches
 *    recall 0.90, to show throughput mode.
 *  - Index builds use all the build threads (default 2) for every system:
 *    hnswlib through parallel addPoint calls in std::threads, FAISS through
 *    its OpenMP.  bytes/vector is the serialized index size divided by the
 *    number of base vectors (FAISS: write_index to memory; hnswlib: the
 *    exact byte count its saveIndex writes), floats for re-ranking included.
 *  - Output: one CSV row per (system, setting) with the columns
 *    system,params,recall,qps,build_s,bytes_per_vector,threads,batched
 *    which bench/report.py merges with avq's rows.  Params use spaces, never
 *    commas, so the CSV needs no quoting.
 *  - The program is standalone: it reads TEXMEX .fvecs/.ivecs itself (the
 *    format `make data` writes) and links neither libavq nor the CLI's
 *    readers, so the baseline numbers never wait on, or break with, work in
 *    progress on the library.
 */
#include <algorithm>
#include <cerrno>
#include <atomic>
#include <fstream>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <omp.h>

#include <hnswlib/hnswlib.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexRefine.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>


namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Options {
    std::string base = "data/glove-100/base.fvecs";
    std::string query = "data/glove-100/query.fvecs";
    std::string gt = "data/glove-100/gt_cos.ivecs";
    std::string csv;
    std::string systems = "hnsw,faiss";
    size_t k = 10;
    size_t nq = 0;       // 0 = all queries
    int threads = 2;     // build threads and batched-row threads
    int runs = 1;        // timed passes per setting; the best is kept
    bool cpu_timer = false;  // single-thread rows timed by thread CPU time
    int nlist = 2048;
    // Finer parameter grids, so that each system's best point near a target
    // recall is found about as closely as avq's (bench/avq_sweep.py sweeps
    // 17 x 5 settings): hnswlib's ef, and FAISS's nprobe and k_factor (the
    // native build only: the generic one is too slow for a fine sweep).
    bool hnsw_fine = false, faiss_fine = false;
    bool quick = false;
    std::string cache;   // directory for built hnswlib graphs ("" = none)
};

struct Data {
    size_t n = 0, nq = 0, d = 0, gt_cols = 0;
    std::vector<float> base, query;
    std::vector<int32_t> gt;
};

struct Row {
    std::string system, params;
    double recall, qps, build_s, bytes_per_vector;
    int threads;
    bool batched;
};

[[noreturn]] void die(const std::string &msg) {
    std::fprintf(stderr, "baselines: %s\n", msg.c_str());
    std::exit(1);
}

void usage() {
    std::printf(
        "usage: baselines [--base F] [--query F] [--gt F] [--k N] [--csv OUT]\n"
        "                 [--systems hnsw,faiss] [--nq N] [--threads N]\n"
        "                 [--runs N] [--nlist N] [--timer wall|cpu] [--quick]\n"
        "                 [--cache DIR] [--hnsw-fine] [--faiss-fine]\n"
        "Benchmarks hnswlib and FAISS IVF-PQ fast-scan + refine on cosine\n"
        "similarity; writes system,params,recall,qps,build_s,bytes_per_vector,\n"
        "threads,batched rows to --csv (and prints them).  --cache DIR keeps the\n"
        "hnswlib graphs (minutes to build) between runs, with their build time.\n"
        "--hnsw-fine / --faiss-fine: finer ef / nprobe x k_factor grids.\n");
}

Options parse_args(int argc, char **argv) {
    Options o;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) die("option " + a + " needs a value");
            return argv[++i];
        };
        auto num = [&]() -> long {
            std::string v = val();
            char *end = nullptr;
            long x = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end || x < 0) die("bad number for " + a + ": " + v);
            return x;
        };
        if (a == "--base") o.base = val();
        else if (a == "--query") o.query = val();
        else if (a == "--gt") o.gt = val();
        else if (a == "--csv") o.csv = val();
        else if (a == "--systems") o.systems = val();
        else if (a == "--k") o.k = (size_t)num();
        else if (a == "--nq") o.nq = (size_t)num();
        else if (a == "--threads") o.threads = (int)num();
        else if (a == "--runs") o.runs = (int)num();
        else if (a == "--nlist") o.nlist = (int)num();
        else if (a == "--quick") o.quick = true;
        else if (a == "--hnsw-fine") o.hnsw_fine = true;
        else if (a == "--faiss-fine") o.faiss_fine = true;
        else if (a == "--cache") o.cache = val();
        else if (a == "--timer") {
            std::string v = val();
            if (v != "wall" && v != "cpu") die("--timer takes wall or cpu");
            o.cpu_timer = v == "cpu";
        }
        else if (a == "-h" || a == "--help") { usage(); std::exit(0); }
        else die("unknown option " + a + " (see --help)");
    }
    if (o.k == 0) die("--k must be >= 1");
    if (o.threads < 1) o.threads = 1;
    if (o.runs < 1) o.runs = 1;
    if (o.nlist < 1) die("--nlist must be >= 1");
    return o;
}

void normalise(std::vector<float> &v, size_t d) {
    for (size_t i = 0; i < v.size() / d; i++) {
        float *x = v.data() + i * d;
        double s = 0;
        for (size_t j = 0; j < d; j++) s += (double)x[j] * x[j];
        if (s > 0) {
            float inv = (float)(1.0 / std::sqrt(s));
            for (size_t j = 0; j < d; j++) x[j] *= inv;
        }
    }
}

/* A row-major matrix read from a TEXMEX file. */
template <class T>
struct Matrix {
    size_t rows = 0, cols = 0;
    std::vector<T> data;
};

/* .fvecs / .ivecs: each row is an int32 dimension followed by that many
 * 4-byte values.  Every row must have the first row's dimension. */
template <class T>
Matrix<T> read_vecs(const std::string &path) {
    static_assert(sizeof(T) == 4, "fvecs/ivecs hold 4-byte values");
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) die(path + ": " + std::strerror(errno));
    std::fseek(f, 0, SEEK_END);
    long size = std::ftell(f);
    std::rewind(f);
    int32_t dim = 0;
    if (size < 8 || std::fread(&dim, 4, 1, f) != 1 || dim <= 0 || dim > (1 << 20) ||
        size % (4 * ((long)dim + 1)) != 0)
        die(path + ": not a .fvecs/.ivecs file (bad dimension or file size)");
    Matrix<T> m;
    m.cols = (size_t)dim;
    m.rows = (size_t)size / (4 * (m.cols + 1));
    m.data.resize(m.rows * m.cols);
    std::rewind(f);
    for (size_t i = 0; i < m.rows; i++) {
        int32_t di = 0;
        if (std::fread(&di, 4, 1, f) != 1 || di != dim ||
            std::fread(m.data.data() + i * m.cols, 4, m.cols, f) != m.cols)
            die(path + ": row " + std::to_string(i) + " is truncated or of another dimension");
    }
    std::fclose(f);
    return m;
}

Data load(const Options &o) {
    for (const std::string *p : {&o.base, &o.query})
        if (p->size() < 6 || p->compare(p->size() - 6, 6, ".fvecs") != 0)
            die(*p + ": only .fvecs input is supported (convert with the avq CLI)");
    if (o.gt.size() < 6 || o.gt.compare(o.gt.size() - 6, 6, ".ivecs") != 0)
        die(o.gt + ": only .ivecs ground truth is supported");
    Matrix<float> b = read_vecs<float>(o.base), q = read_vecs<float>(o.query);
    Matrix<int32_t> g = read_vecs<int32_t>(o.gt);
    if (b.cols != q.cols) die("base and query dimensions differ");
    if (g.rows < q.rows) die("ground truth has fewer rows than the query file");
    if (g.cols < o.k) die("ground truth has fewer columns than --k");
    Data d;
    d.n = b.rows;
    d.d = b.cols;
    d.nq = o.nq ? std::min(o.nq, q.rows) : q.rows;
    d.gt_cols = g.cols;
    d.base = std::move(b.data);
    d.query.assign(q.data.begin(), q.data.begin() + (long)(d.nq * q.cols));
    d.gt.assign(g.data.begin(), g.data.begin() + (long)(d.nq * g.cols));
    for (float v : d.base)
        if (!std::isfinite(v)) die(o.base + ": contains NaN or infinite values");
    for (float v : d.query)
        if (!std::isfinite(v)) die(o.query + ": contains NaN or infinite values");
    for (int32_t id : d.gt)
        if (id < 0 || (size_t)id >= d.n) die("ground truth id out of range of the base set");
    normalise(d.base, d.d);
    normalise(d.query, d.d);
    return d;
}

/* Mean over queries of |found ∩ true top-k| / k.  labels: nq x k, -1 = none. */
double recall_at_k(const Data &d, const std::vector<int64_t> &labels, size_t k) {
    size_t hits = 0;
    for (size_t q = 0; q < d.nq; q++) {
        const int32_t *truth = d.gt.data() + q * d.gt_cols;
        const int64_t *got = labels.data() + q * k;
        for (size_t i = 0; i < k; i++) {
            if (got[i] < 0) continue;
            for (size_t j = 0; j < k; j++)
                if (truth[j] == got[i]) { hits++; break; }
        }
    }
    return (double)hits / ((double)d.nq * (double)k);
}

double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Times `pass` (which answers all queries into labels) o.runs times and
 * returns the best time.  Wall time by default.  With --timer cpu, passes
 * that run entirely on the calling thread (single_thread) are timed by that
 * thread's CPU time instead: on a shared machine this ignores the time the
 * thread spent descheduled, though not the cache and memory-bandwidth
 * interference of the other processes.  No untimed warm-up: with --runs 1
 * every system pays the same cold start, with more runs the best is kept. */
template <class F>
double best_time(const Options &o, bool single_thread, F pass) {
    double best = 1e300;
    for (int r = 0; r < o.runs; r++) {
        if (o.cpu_timer && single_thread) {
            double c0 = thread_cpu_seconds();
            pass();
            best = std::min(best, thread_cpu_seconds() - c0);
        } else {
            auto t0 = Clock::now();
            pass();
            best = std::min(best, seconds_since(t0));
        }
    }
    return best;
}

class CsvOut {
  public:
    explicit CsvOut(const std::string &path) {
        if (path.empty()) return;
        f_ = std::fopen(path.c_str(), "w");
        if (!f_) die("cannot write " + path + ": " + std::strerror(errno));
        std::fprintf(f_, "system,params,recall,qps,build_s,bytes_per_vector,threads,batched\n");
        std::fflush(f_);
    }
    ~CsvOut() { if (f_) std::fclose(f_); }
    void add(const Row &r) {
        char line[512];
        std::snprintf(line, sizeof line, "%s,%s,%.4f,%.1f,%.2f,%.1f,%d,%d",
                      r.system.c_str(), r.params.c_str(), r.recall, r.qps,
                      r.build_s, r.bytes_per_vector, r.threads, r.batched ? 1 : 0);
        std::printf("%s\n", line);
        std::fflush(stdout);
        if (f_) { std::fprintf(f_, "%s\n", line); std::fflush(f_); }
        rows.push_back(r);
    }
    std::vector<Row> rows;

  private:
    FILE *f_ = nullptr;
};

/* The fastest single-thread row of `system` with recall >= 0.90 (or, if
 * none gets there, the most accurate one): the "mid setting" for the
 * batched row.  Returns the index into rows, or -1. */
long pick_mid(const std::vector<Row> &rows, const std::string &system) {
    long best = -1;
    for (size_t i = 0; i < rows.size(); i++) {
        const Row &r = rows[i];
        if (r.system != system || r.batched) continue;
        if (best < 0) { best = (long)i; continue; }
        const Row &b = rows[(size_t)best];
        bool r_ok = r.recall >= 0.90, b_ok = b.recall >= 0.90;
        if (r_ok != b_ok ? r_ok : (r_ok ? r.qps > b.qps : r.recall > b.recall))
            best = (long)i;
    }
    return best;
}

/* ------------------------------------------------------------------ hnswlib */

/* Bytes hnswlib's saveIndex writes for this index (header + level-0 block +
 * per-element upper-level link lists), computed without touching the disk. */
size_t hnsw_serialized_bytes(const hnswlib::HierarchicalNSW<float> &h) {
    // header: 9 size_t-sized fields, maxlevel_ (int), enterpoint_node_ (uint),
    // mult_ (double) -- as listed in hnswlib 0.6's saveIndex
    size_t bytes = 9 * sizeof(size_t) + sizeof(int) + sizeof(unsigned) + sizeof(double);
    bytes += h.cur_element_count * h.size_data_per_element_;
    for (size_t i = 0; i < h.cur_element_count; i++)
        bytes += sizeof(unsigned) + (size_t)h.element_levels_[i] * h.size_links_per_element_;
    return bytes;
}

void run_hnsw(const Options &o, const Data &d, CsvOut &out) {
    std::vector<int> Ms = o.quick ? std::vector<int>{16} : std::vector<int>{16, 32};
    std::vector<size_t> efs =
        o.quick       ? std::vector<size_t>{10, 40, 160, 800}
        : o.hnsw_fine ? std::vector<size_t>{10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120,
                                            140, 160, 180, 200, 250, 300, 400, 500, 800}
                      : std::vector<size_t>{10, 20, 40, 60, 80, 100, 120, 160, 200, 300, 500, 800};
    const size_t efC = 200, k = o.k;
    hnswlib::InnerProductSpace space(d.d);

    for (int M : Ms) {
        std::string sys = "hnswlib-M" + std::to_string(M);
        std::printf("# %s: building (M=%d efConstruction=%zu, %d threads, %zu x %zu)\n",
                    sys.c_str(), M, efC, o.threads, d.n, d.d);
        std::fflush(stdout);
        // A cached graph (same data size, M, efC) is loaded instead of rebuilt;
        // its build time was recorded next to it when it was built.
        std::string cached = o.cache.empty() ? "" :
            o.cache + "/hnswlib-M" + std::to_string(M) + "-efC" + std::to_string(efC) +
            "-n" + std::to_string(d.n) + "-d" + std::to_string(d.d) + ".bin";
        std::unique_ptr<hnswlib::HierarchicalNSW<float>> h;
        double build_s = 0;
        if (!cached.empty() && std::ifstream(cached) && std::ifstream(cached + ".build_s")) {
            h = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space, cached, false, d.n);
            std::ifstream(cached + ".build_s") >> build_s;
            std::printf("# %s: loaded %s (built earlier in %.1f s)\n", sys.c_str(),
                        cached.c_str(), build_s);
        } else {
            auto t0 = Clock::now();
            h = std::make_unique<hnswlib::HierarchicalNSW<float>>(&space, d.n, (size_t)M, efC, 100);
            // The first point alone (it becomes the entry point), then the rest
            // from a shared counter, in small chunks so the threads interleave.
            h->addPoint(d.base.data(), 0);
            std::atomic<size_t> next{1};
            auto worker = [&]() {
                const size_t chunk = 64;
                for (;;) {
                    size_t s = next.fetch_add(chunk);
                    if (s >= d.n) break;
                    size_t e = std::min(d.n, s + chunk);
                    for (size_t i = s; i < e; i++) h->addPoint(d.base.data() + i * d.d, i);
                }
            };
            std::vector<std::thread> pool;
            for (int t = 0; t < o.threads; t++) pool.emplace_back(worker);
            for (auto &t : pool) t.join();
            build_s = seconds_since(t0);
            if (!cached.empty()) {
                h->saveIndex(cached);
                std::ofstream(cached + ".build_s") << build_s << "\n";
            }
        }
        double bpv = (double)hnsw_serialized_bytes(*h) / (double)d.n;
        std::printf("# %s: built in %.1f s, %.1f bytes/vector\n", sys.c_str(), build_s, bpv);

        std::vector<int64_t> labels(d.nq * k, -1);
        auto answer = [&](size_t q) {
            auto res = h->searchKnn(d.query.data() + q * d.d, k);
            int64_t *dst = labels.data() + q * k;
            size_t i = res.size();
            while (!res.empty()) {  // max-heap: worst first; order is irrelevant for recall
                dst[--i] = (int64_t)res.top().second;
                res.pop();
            }
        };
        for (size_t ef : efs) {
            h->setEf(ef);
            std::fill(labels.begin(), labels.end(), -1);
            double t = best_time(o, true, [&] { for (size_t q = 0; q < d.nq; q++) answer(q); });
            out.add({sys, "M=" + std::to_string(M) + " efC=200 ef=" + std::to_string(ef),
                     recall_at_k(d, labels, k), (double)d.nq / t, build_s, bpv, 1, false});
        }
        // Batched row: all queries, split over the threads (hnswlib has no
        // batch call; its Python knn_query does the same).
        long mid = pick_mid(out.rows, sys);
        if (mid >= 0 && o.threads > 1) {
            std::string p = out.rows[(size_t)mid].params;
            size_t ef = std::stoul(p.substr(p.rfind("ef=") + 3));
            h->setEf(ef);
            std::fill(labels.begin(), labels.end(), -1);
            double t = best_time(o, false, [&] {
                std::atomic<size_t> nextq{0};
                auto w = [&]() {
                    for (;;) {
                        size_t s = nextq.fetch_add(16);
                        if (s >= d.nq) break;
                        for (size_t q = s; q < std::min(d.nq, s + 16); q++) answer(q);
                    }
                };
                std::vector<std::thread> ts;
                for (int i = 0; i < o.threads; i++) ts.emplace_back(w);
                for (auto &th : ts) th.join();
            });
            out.add({sys, p, recall_at_k(d, labels, k), (double)d.nq / t, build_s, bpv,
                     o.threads, true});
        }
    }
}

/* -------------------------------------------------------------------- FAISS */

using fidx = faiss::Index::idx_t;  // FAISS 1.7.3 keeps it inside Index

void run_faiss(const Options &o, const Data &d, CsvOut &out) {
    const int pq_m = (int)(d.d / 2);  // 2 dims per 4-bit sub-quantizer, like ScaNN's default
    const std::string desc = "IVF" + std::to_string(o.nlist) + " PQ" + std::to_string(pq_m) +
                             "x4fs RFlat";
    const std::string sys = "faiss-ivfpqfs";
#ifdef AVQ_FAISS_NATIVE
    // Built against the FAISS of bench/faiss_native.sh (Makefile: baselines-native).
    std::printf("# %s: %s, inner product, FAISS %d.%d.%d built natively for this CPU.\n",
                sys.c_str(), desc.c_str(), FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
                FAISS_VERSION_PATCH);
#else
    std::printf("# %s: %s, inner product. NOTE: Debian's libfaiss %d.%d.%d is a generic "
                "build (not natively tuned: its fast-scan kernel has no AVX2/AVX-512 code), "
                "so these FAISS numbers are below what a native FAISS build would reach.\n",
                sys.c_str(), desc.c_str(), FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
                FAISS_VERSION_PATCH);
#endif
    if (d.d % 2) std::printf("# note: odd dimension, PQ%d covers it with one wider block\n", pq_m);
    std::fflush(stdout);

    omp_set_num_threads(o.threads);
    auto t0 = Clock::now();
    faiss::IndexFlatIP quantizer((fidx)d.d);
    faiss::IndexIVFPQFastScan ivf(&quantizer, d.d, (size_t)o.nlist, (size_t)pq_m, 4,
                                  faiss::METRIC_INNER_PRODUCT);
    faiss::IndexRefineFlat index(&ivf);
    index.train((fidx)d.n, d.base.data());
    index.add((fidx)d.n, d.base.data());
    double build_s = seconds_since(t0);
    faiss::VectorIOWriter w;
    faiss::write_index(&index, &w);
    double bpv = (double)w.data.size() / (double)d.n;
    std::printf("# %s: built in %.1f s (%d threads), %.1f bytes/vector\n", sys.c_str(), build_s,
                o.threads, bpv);
    std::fflush(stdout);

    std::vector<int> nprobes =
        o.quick        ? std::vector<int>{4, 16, 64}
        : o.faiss_fine ? std::vector<int>{1, 2, 4, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48,
                                          56, 64, 80, 96, 128}
                       : std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128};
    // k_factor 2 and 5 never made the frontier on GloVe (recall saturates
    // far too low), nor did nprobe 256; the grid is kept small because the
    // generic FAISS build is slow.
    std::vector<float> kfs = o.quick        ? std::vector<float>{5, 20}
                             : o.faiss_fine ? std::vector<float>{5, 10, 15, 20, 30, 50}
                                            : std::vector<float>{10, 20, 50};
    const size_t k = o.k;
    std::vector<int64_t> labels(d.nq * k, -1);
    std::vector<float> dist(d.nq * k);

    omp_set_num_threads(1);
    for (int np : nprobes) {
        if (np > o.nlist) continue;
        for (float kf : kfs) {
            ivf.nprobe = (size_t)np;
            index.k_factor = kf;
            std::fill(labels.begin(), labels.end(), -1);
            double t = best_time(o, true, [&] {
                for (size_t q = 0; q < d.nq; q++)
                    index.search(1, d.query.data() + q * d.d, (fidx)k,
                                 dist.data() + q * k, labels.data() + q * k);
            });
            char p[128];
            std::snprintf(p, sizeof p, "%s nprobe=%d k_factor=%g", desc.c_str(), np, kf);
            out.add({sys, p, recall_at_k(d, labels, k), (double)d.nq / t, build_s, bpv, 1, false});
        }
    }
    long mid = pick_mid(out.rows, sys);
    if (mid >= 0 && o.threads > 1) {
        std::string p = out.rows[(size_t)mid].params;
        ivf.nprobe = std::stoul(p.substr(p.find("nprobe=") + 7));
        index.k_factor = std::stof(p.substr(p.find("k_factor=") + 9));
        omp_set_num_threads(o.threads);
        std::fill(labels.begin(), labels.end(), -1);
        double t = best_time(o, false, [&] {
            index.search((fidx)d.nq, d.query.data(), (fidx)k, dist.data(),
                         labels.data());
        });
        out.add({sys, p, recall_at_k(d, labels, k), (double)d.nq / t, build_s, bpv, o.threads,
                 true});
        omp_set_num_threads(1);
    }
}

/* The 1-minute load average, printed at start and end: on a shared 2-core
 * machine it tells whether the timings were taken on a quiet box. */
std::string loadavg() {
    FILE *f = std::fopen("/proc/loadavg", "r");
    char buf[64] = "?";
    if (f) {
        if (!std::fgets(buf, sizeof buf, f)) std::strcpy(buf, "?");
        std::fclose(f);
    }
    std::string s(buf);
    return s.substr(0, s.find(' '));
}

}  // namespace

int main(int argc, char **argv) {
    Options o = parse_args(argc, argv);
    bool want_hnsw = false, want_faiss = false;
    {
        std::string s = o.systems + ",";
        size_t p = 0, c;
        while ((c = s.find(',', p)) != std::string::npos) {
            std::string name = s.substr(p, c - p);
            if (name == "hnsw" || name == "hnswlib") want_hnsw = true;
            else if (name == "faiss") want_faiss = true;
            else if (!name.empty()) die("unknown system '" + name + "' (hnsw, faiss)");
            p = c + 1;
        }
    }
    auto t0 = Clock::now();
    Data d = load(o);
    std::printf("# data: %zu base x %zu dims, %zu queries, k=%zu, cosine (normalised, inner "
                "product); loaded in %.1f s\n",
                d.n, d.d, d.nq, o.k, seconds_since(t0));
    std::printf("# search: single thread, one query per call (plus one batched %d-thread "
                "row per index); best of %d timed pass(es), %s; %u CPUs, load average %s\n",
                o.threads, o.runs,
                o.cpu_timer ? "single-thread rows timed by thread CPU time" : "wall-clock time", std::thread::hardware_concurrency(), loadavg().c_str());
    CsvOut out(o.csv);
    if (want_hnsw) run_hnsw(o, d, out);
    if (want_faiss) run_faiss(o, d, out);
    std::printf("# total %.1f s, load average %s\n", seconds_since(t0), loadavg().c_str());
    return 0;
}
