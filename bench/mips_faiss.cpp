/*
 * mips_faiss.cpp -- the FAISS side of the true-MIPS comparison (bench/mips.py,
 * `make bench-mips`): IVF{L},PQ{M}x4fs with METRIC_INNER_PRODUCT and an exact
 * refine (IndexRefineFlat) on raw, un-normalised vectors, linked against the
 * FAISS that bench/faiss_native.sh builds for this CPU (never Debian's generic
 * libfaiss: the program refuses a library compiled without AVX2).
 *
 * Two sub-commands, so that bench/mips.py can interleave FAISS with avq in one
 * run (each timing process loads a saved index, as build/bench/recall_qps does):
 *
 *   mips_faiss build --base B.fvecs --out INDEX [--nlist 0] [--m 0]
 *                    [--coarse ip|l2] [--pq-train 0] [--by-residual 1]
 *                    [--threads 2] [--seed 1234]
 *       trains + adds with `--threads` OpenMP threads and writes the index.
 *       --nlist 0 = round(sqrt(n)) lists (avq's default leaf count), --m 0 =
 *       d/2 sub-quantizers (4 bits, 2 dims per code, avq's default).  --coarse
 *       ip (default): FAISS's own choice for an IP IVF, spherical k-means
 *       (IndexIVF sets cp.spherical for METRIC_INNER_PRODUCT: unit-norm
 *       centroids, points assigned by inner product); l2: plain L2 k-means
 *       (cp.spherical off, Level1Quantizer::clustering_index = IndexFlatL2);
 *       either way the lists are probed by inner product.  --by-residual 1
 *       (default here): the PQ encodes each vector's residual from its list
 *       centroid (IndexIVFPQFastScan's own default is 0, "much faster" for L2;
 *       for IP the centroid term is one bias per list and recall was higher
 *       at the same speed on GloVe).  --pq-train N: train the PQ on N vectors
 *       (FAISS's default is 256 x 16 = 4096).
 *       Prints key=value lines: nlist, m, build_s, bytes_per_vector, ...
 *
 *   mips_faiss search --index INDEX --query Q.fvecs --gt GT.ivecs [--k 10]
 *                     [--settings NPROBE:KFACTOR,...] [--repeat 3] [--nq N]
 *                     [--implem 0]
 *       one thread (omp_set_num_threads(1)), one query per search() call, every
 *       setting timed --repeat passes over the queries, the best pass kept, by
 *       the wall clock and by the thread's CPU clock (CLOCK_THREAD_CPUTIME_ID).
 *       CSV on stdout: nprobe,k_factor,recall,qps_wall,qps_cpu
 *       (k_factor * k candidates from the fast scan are re-scored exactly).
 *
 * recall = mean over queries of |returned ids ∩ first k ground-truth ids| / k.
 * The program reads TEXMEX .fvecs/.ivecs itself and links no libavq.
 */
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexRefine.h>
#include <faiss/index_io.h>
#include <faiss/utils/utils.h>

namespace {

using fidx = faiss::Index::idx_t;  // FAISS 1.7.3 keeps it inside Index

[[noreturn]] void die(const std::string &msg) {
    std::fprintf(stderr, "mips_faiss: %s\n", msg.c_str());
    std::exit(1);
}

double now(clockid_t clock) {
    timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

template <class T>
struct Matrix {
    size_t rows = 0, cols = 0;
    std::vector<T> data;
};

/* .fvecs / .ivecs: each row is an int32 dimension and that many 4-byte values. */
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

Matrix<float> read_fvecs_checked(const std::string &path) {
    if (path.size() < 6 || path.compare(path.size() - 6, 6, ".fvecs") != 0)
        die(path + ": only .fvecs is supported (convert with the avq CLI)");
    Matrix<float> m = read_vecs<float>(path);
    for (float v : m.data)
        if (!std::isfinite(v)) die(path + ": contains NaN or infinite values");
    return m;
}

/* The library must be a native build: Debian's generic one says no AVX2. */
void check_native() {
    std::string opts = faiss::get_compile_options();
    if (opts.find("AVX2") == std::string::npos)
        die("this libfaiss was compiled without AVX2 (\"" + opts +
            "\"): a generic build; link the one bench/faiss_native.sh builds");
}

long parse_num(const std::string &opt, const std::string &v) {
    char *end = nullptr;
    long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end || x < 0) die("bad number for " + opt + ": " + v);
    return x;
}

int cmd_build(int argc, char **argv) {
    std::string base, out, coarse = "ip";
    long nlist = 0, m = 0, threads = 2, seed = 1234, pq_train = 0, by_residual = 1;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("option " + a + " needs a value");
        std::string v = argv[++i];
        if (a == "--base") base = v;
        else if (a == "--out") out = v;
        else if (a == "--nlist") nlist = parse_num(a, v);
        else if (a == "--m") m = parse_num(a, v);
        else if (a == "--threads") threads = std::max(1L, parse_num(a, v));
        else if (a == "--seed") seed = parse_num(a, v);
        else if (a == "--coarse") coarse = v;
        else if (a == "--pq-train") pq_train = parse_num(a, v);
        else if (a == "--by-residual") by_residual = parse_num(a, v);
        else die("build: unknown option " + a);
    }
    if (base.empty() || out.empty()) die("build needs --base and --out");
    if (coarse != "ip" && coarse != "l2") die("--coarse takes ip or l2");
    check_native();
    Matrix<float> b = read_fvecs_checked(base);
    const size_t n = b.rows, d = b.cols;
    if (nlist == 0) nlist = std::max(1L, std::lround(std::sqrt((double)n)));
    if (m == 0) m = (long)(d / 2);
    if (m < 1 || d % (size_t)m != 0)
        die("d = " + std::to_string(d) + " is not a multiple of M = " + std::to_string(m) +
            " (pass --m)");
    if ((size_t)nlist > n) die("more lists than vectors");

    omp_set_num_threads((int)threads);
    double w0 = now(CLOCK_MONOTONIC);
    faiss::IndexFlatIP *quantizer = new faiss::IndexFlatIP((fidx)d);
    faiss::IndexIVFPQFastScan *ivf = new faiss::IndexIVFPQFastScan(
        quantizer, d, (size_t)nlist, (size_t)m, 4, faiss::METRIC_INNER_PRODUCT);
    ivf->own_fields = true;
    ivf->cp.seed = (int)seed;
    ivf->by_residual = by_residual != 0;
    // FAISS trains the 4-bit PQ on max_points_per_centroid (256) x 16 = 4096
    // vectors by default; --pq-train N raises that sample to N.
    if (pq_train > 0) ivf->pq.cp.max_points_per_centroid = (int)std::max(1L, pq_train / 16);
    ivf->pq.cp.seed = (int)seed;
    faiss::IndexFlatL2 l2((fidx)d);
    if (coarse == "l2") {
        ivf->cp.spherical = false;
        ivf->clustering_index = &l2;
    }
    faiss::IndexRefineFlat index(ivf);
    index.own_fields = true;
    index.train((fidx)n, b.data.data());
    index.add((fidx)n, b.data.data());
    ivf->clustering_index = nullptr;
    double build_s = now(CLOCK_MONOTONIC) - w0;

    std::string tmp = out + ".tmp";
    faiss::write_index(&index, tmp.c_str());
    if (std::rename(tmp.c_str(), out.c_str()) != 0) die("cannot rename " + tmp + ": " + std::strerror(errno));
    struct stat st;
    if (stat(out.c_str(), &st) != 0) die(out + ": " + std::strerror(errno));
    std::printf("faiss_version=%d.%d.%d\n", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
                FAISS_VERSION_PATCH);
    std::printf("compile_options=%s\n", faiss::get_compile_options().c_str());
    std::printf("description=IVF%ld,PQ%ldx4fs,RFlat coarse=%s by_residual=%ld pq_train=%ld metric=ip\n",
                nlist, m, coarse.c_str(), by_residual, (long)ivf->pq.cp.max_points_per_centroid * 16);
    std::printf("n=%zu\nd=%zu\nnlist=%ld\nm=%ld\nthreads=%ld\n", n, d, nlist, m, threads);
    std::printf("build_s=%.2f\nbytes_per_vector=%.1f\n", build_s, (double)st.st_size / (double)n);
    size_t largest = 0, empty = 0;
    for (size_t l = 0; l < ivf->nlist; l++) {
        largest = std::max(largest, ivf->invlists->list_size(l));
        empty += ivf->invlists->list_size(l) == 0;
    }
    std::printf("list_imbalance=%.3f\nlargest_list=%zu\nempty_lists=%zu\n",
                ivf->invlists->imbalance_factor(), largest, empty);
    return 0;
}

int cmd_search(int argc, char **argv) {
    std::string index_path, query_path, gt_path;
    std::string settings = "4:5,8:5,16:10,32:10,64:20";
    long k = 10, repeat = 3, nq_limit = 0, implem = 0;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("option " + a + " needs a value");
        std::string v = argv[++i];
        if (a == "--index") index_path = v;
        else if (a == "--query") query_path = v;
        else if (a == "--gt") gt_path = v;
        else if (a == "--settings") settings = v;
        else if (a == "--k") k = parse_num(a, v);
        else if (a == "--repeat") repeat = std::max(1L, parse_num(a, v));
        else if (a == "--nq") nq_limit = parse_num(a, v);
        else if (a == "--implem") implem = parse_num(a, v);
        else die("search: unknown option " + a);
    }
    if (index_path.empty() || query_path.empty() || gt_path.empty())
        die("search needs --index, --query and --gt");
    if (k < 1) die("--k must be >= 1");
    check_native();
    std::unique_ptr<faiss::Index> loaded(faiss::read_index(index_path.c_str()));
    auto *refine = dynamic_cast<faiss::IndexRefine *>(loaded.get());
    auto *ivf = refine ? dynamic_cast<faiss::IndexIVFPQFastScan *>(refine->base_index) : nullptr;
    if (!ivf) die(index_path + ": not an IndexRefineFlat over an IndexIVFPQFastScan");
    if (loaded->metric_type != faiss::METRIC_INNER_PRODUCT) die(index_path + ": not inner product");
    ivf->implem = (int)implem;

    Matrix<float> q = read_fvecs_checked(query_path);
    if (gt_path.size() < 6 || gt_path.compare(gt_path.size() - 6, 6, ".ivecs") != 0)
        die(gt_path + ": only .ivecs ground truth is supported");
    Matrix<int32_t> gt = read_vecs<int32_t>(gt_path);
    if (q.cols != (size_t)loaded->d) die("query dimension differs from the index");
    if (gt.cols < (size_t)k) die("ground truth has fewer columns than --k");
    size_t nq = std::min(q.rows, gt.rows);
    if (nq_limit > 0) nq = std::min(nq, (size_t)nq_limit);
    for (size_t i = 0; i < nq * gt.cols; i++)
        if (gt.data[i] < 0 || gt.data[i] >= loaded->ntotal) die("ground truth id out of range");
    const size_t d = q.cols;

    omp_set_num_threads(1);
    std::vector<fidx> labels(nq * (size_t)k);
    std::vector<float> dist(nq * (size_t)k);
    std::printf("nprobe,k_factor,recall,qps_wall,qps_cpu\n");
    std::fflush(stdout);
    size_t pos = 0;
    while (pos < settings.size()) {
        size_t comma = settings.find(',', pos);
        std::string s = settings.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? settings.size() : comma + 1;
        size_t colon = s.find(':');
        if (colon == std::string::npos) die("setting '" + s + "' is not NPROBE:KFACTOR");
        long nprobe = parse_num("nprobe", s.substr(0, colon));
        char *end = nullptr;
        float kf = std::strtof(s.c_str() + colon + 1, &end);
        if (nprobe < 1 || !(kf >= 1) || *end) die("bad setting '" + s + "'");
        ivf->nprobe = (size_t)std::min<long>(nprobe, (long)ivf->nlist);
        refine->k_factor = kf;
        double best_wall = 1e300, best_cpu = 1e300;
        for (long r = 0; r < repeat; r++) {
            std::fill(labels.begin(), labels.end(), -1);
            double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
            for (size_t i = 0; i < nq; i++)
                refine->search(1, q.data.data() + i * d, (fidx)k, dist.data() + i * (size_t)k,
                               labels.data() + i * (size_t)k);
            best_cpu = std::min(best_cpu, now(CLOCK_THREAD_CPUTIME_ID) - c0);
            best_wall = std::min(best_wall, now(CLOCK_MONOTONIC) - w0);
        }
        size_t hits = 0;
        for (size_t i = 0; i < nq; i++) {
            const int32_t *truth = gt.data.data() + i * gt.cols;
            const fidx *got = labels.data() + i * (size_t)k;
            for (long a = 0; a < k; a++) {
                if (got[a] < 0) continue;
                for (long b = 0; b < k; b++)
                    if (truth[b] == got[a]) { hits++; break; }
            }
        }
        std::printf("%zu,%g,%.4f,%.1f,%.1f\n", ivf->nprobe, kf,
                    (double)hits / ((double)nq * (double)k), (double)nq / best_wall,
                    (double)nq / best_cpu);
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        std::printf(
            "usage: mips_faiss build --base B.fvecs --out INDEX [--nlist 0] [--m 0]\n"
            "                        [--coarse ip|l2] [--pq-train 0] [--by-residual 1]\n"
            "                        [--threads 2] [--seed 1234]\n"
            "       mips_faiss search --index INDEX --query Q.fvecs --gt GT.ivecs [--k 10]\n"
            "                        [--settings NPROBE:KFACTOR,...] [--repeat 3] [--nq N]\n"
            "                        [--implem 0]\n"
            "FAISS IVF-PQ 4-bit fast scan + exact refine, inner product, on raw vectors;\n"
            "search prints CSV nprobe,k_factor,recall,qps_wall,qps_cpu (one thread, one\n"
            "query per call, best of --repeat passes).\n");
        return argc < 2 ? 2 : 0;
    }
    try {
        std::string cmd = argv[1];
        if (cmd == "build") return cmd_build(argc, argv);
        if (cmd == "search") return cmd_search(argc, argv);
        die("unknown command " + cmd + " (build, search)");
    } catch (const std::exception &e) {
        die(std::string("FAISS: ") + e.what());
    }
}
