/*
 * filter_baselines.cpp -- the baselines of the filtered-search benchmark
 * (bench/filter.py, `make bench-filter`, issue 13): what a user of FAISS or
 * hnswlib writes to search GloVe-100 (cosine) under a tag condition.
 *
 *   faiss-sel   IndexIVFPQ (IVF{L},PQ{M}x{nbits}, inner product, PQ on residuals)
 *               searched with SearchParametersIVF{nprobe, sel = IDSelectorBitmap}:
 *               FAISS skips the disallowed codes inside the list scan.  The
 *               k * k_factor best allowed candidates are then re-scored exactly
 *               with the float vectors and the top k kept (what IndexRefineFlat
 *               does; IndexRefine::search in 1.7.3 refuses SearchParameters, so
 *               the refine step is written out here with faiss::fvec_inner_product).
 *   faiss-post  IndexIVFPQFastScan (IVF{L},PQ{d/2}x4fs, the 4-bit fast scan):
 *               FAISS 1.7.3's IndexIVFFastScan::search throws "search params not
 *               supported for this index" for any SearchParameters, so it cannot
 *               take an IDSelector.  Closest thing it supports: post-filtering --
 *               the fast scan returns ceil(k * k_factor / s) candidates (s = the
 *               query's selectivity, known exactly here: the most favourable
 *               guess), the disallowed ones are dropped, the rest (about
 *               k * k_factor) re-scored exactly, top k kept.
 *   hnsw-post   hnswlib 0.6.2 HierarchicalNSW (inner product, M, efConstruction
 *               200; this hnswlib has no filter functor): searchKnn for
 *               k' = ceil(k * margin / s) results with ef = max(ef, k'), keep the
 *               allowed ones, the best k of them.
 *
 * The filter of a query is "tags_any": the vector carries at least one of the
 * query's tags.  The allowed set of every query is materialised as a bitmap
 * over the base ids BEFORE timing (one shared bitmap when every query has the
 * same filter): the baselines get their selector for free, avq builds its
 * allow masks inside the timed search.
 *
 * Sub-commands:
 *   filter_baselines build-faiss --base B.fvecs --out F --kind sel|post
 *                    [--nlist 0] [--m 0] [--nbits 8] [--threads 2] [--seed 1234]
 *   filter_baselines build-hnsw --base B.fvecs --out H [--M 16] [--efc 200] [--threads 2]
 *   filter_baselines search --system faiss-sel|faiss-post|hnsw-post --index X
 *                    --base B.fvecs --query Q.fvecs --tags BASE.csr --filters F.csr
 *                    --gt GT.ivecs [--k 10] [--settings A:B,...] [--repeat 1]
 *                    [--max-seconds 0] [--min-queries 200] [--implem 11] [--nq N]
 *       settings: faiss-sel / faiss-post NPROBE:KFACTOR, hnsw-post EF:MARGIN.
 *       CSV on stdout: a,b,recall,qps_wall,qps_cpu,nq,candidates
 *       (candidates = mean number of candidates asked from the index per query).
 *       --max-seconds S: a setting whose pass takes more than S seconds of CPU
 *       time stops after the query that passes S (at least --min-queries):
 *       recall and QPS are then over that prefix of the (randomly ordered)
 *       queries, and nq says how many.
 *       --saturate R: once a setting A:B reaches recall R, later settings A':B'
 *       with A' >= A and B' >= B (more work: recall and cost only grow) are
 *       skipped (printed with recall -1); --min-qps F: the same once a setting
 *       A:B measures fewer than F queries/s (CPU clock).
 *
 * CSR files (written by bench/filter.py): 8 bytes "FLTCSR1\0", uint64 rows,
 * uint64 nnz, uint64 offsets[rows + 1], uint32 values[nnz], little-endian.
 * Vectors are normalised here (cosine = inner product of unit vectors).
 * Linked against the FAISS of bench/faiss_native.sh (refuses a build without
 * AVX2, i.e. Debian's generic libfaiss); hnswlib is header-only and compiled
 * with this program's -O3 -march=native.  Times: wall clock and the thread's
 * CPU clock (CLOCK_THREAD_CPUTIME_ID), best of --repeat passes.
 */
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include <omp.h>

#include <faiss/IndexFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_io.h>
#include <faiss/utils/distances.h>
#include <faiss/utils/utils.h>

#include <hnswlib/hnswlib.h>

namespace {

using fidx = faiss::Index::idx_t;

[[noreturn]] void die(const std::string &msg) {
    std::fprintf(stderr, "filter_baselines: %s\n", msg.c_str());
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

/* Float vectors, every row scaled to unit length (a zero row is an error). */
Matrix<float> read_normalised(const std::string &path) {
    Matrix<float> m = read_vecs<float>(path);
    for (size_t i = 0; i < m.rows; i++) {
        float *r = m.data.data() + i * m.cols;
        double s = 0;
        for (size_t j = 0; j < m.cols; j++) {
            if (!std::isfinite(r[j])) die(path + ": NaN or infinite value in row " + std::to_string(i));
            s += (double)r[j] * r[j];
        }
        if (s == 0) die(path + ": zero row " + std::to_string(i) + " (cosine)");
        float inv = (float)(1.0 / std::sqrt(s));
        for (size_t j = 0; j < m.cols; j++) r[j] *= inv;
    }
    return m;
}

struct Csr {
    size_t rows = 0;
    std::vector<uint64_t> off;
    std::vector<uint32_t> val;
};

Csr read_csr(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) die(path + ": " + std::strerror(errno));
    char magic[8];
    uint64_t rows = 0, nnz = 0;
    if (std::fread(magic, 1, 8, f) != 8 || std::memcmp(magic, "FLTCSR1", 8) != 0 ||
        std::fread(&rows, 8, 1, f) != 1 || std::fread(&nnz, 8, 1, f) != 1)
        die(path + ": not a FLTCSR1 file");
    std::fseek(f, 0, SEEK_END);
    long size = std::ftell(f);
    if (rows > (1ull << 32) || nnz > (1ull << 34) ||
        (uint64_t)size != 24 + 8 * (rows + 1) + 4 * nnz)
        die(path + ": size does not match its header");
    std::fseek(f, 24, SEEK_SET);
    Csr c;
    c.rows = rows;
    c.off.resize(rows + 1);
    c.val.resize(nnz);
    if (std::fread(c.off.data(), 8, rows + 1, f) != rows + 1 ||
        (nnz && std::fread(c.val.data(), 4, nnz, f) != nnz))
        die(path + ": truncated");
    std::fclose(f);
    if (c.off[0] != 0 || c.off[rows] != nnz) die(path + ": bad offsets");
    for (size_t i = 0; i < rows; i++)
        if (c.off[i] > c.off[i + 1]) die(path + ": offsets decrease at row " + std::to_string(i));
    return c;
}

/* Inverted lists of the base tags: tag -> ids (sorted tags, CSR). */
struct Postings {
    std::vector<uint32_t> tags;      // distinct tags, ascending
    std::vector<uint64_t> off;       // tags.size() + 1
    std::vector<uint32_t> ids;
    const uint32_t *find(uint32_t t, size_t *count) const {
        auto it = std::lower_bound(tags.begin(), tags.end(), t);
        if (it == tags.end() || *it != t) { *count = 0; return nullptr; }
        size_t i = (size_t)(it - tags.begin());
        *count = off[i + 1] - off[i];
        return ids.data() + off[i];
    }
};

Postings build_postings(const Csr &base) {
    std::vector<std::pair<uint32_t, uint32_t>> pairs;
    pairs.reserve(base.val.size());
    for (size_t i = 0; i < base.rows; i++)
        for (uint64_t j = base.off[i]; j < base.off[i + 1]; j++) pairs.push_back({base.val[j], (uint32_t)i});
    std::sort(pairs.begin(), pairs.end());
    pairs.erase(std::unique(pairs.begin(), pairs.end()), pairs.end());
    Postings p;
    for (size_t i = 0; i < pairs.size(); i++) {
        if (p.tags.empty() || p.tags.back() != pairs[i].first) {
            p.tags.push_back(pairs[i].first);
            p.off.push_back(i);
        }
        p.ids.push_back(pairs[i].second);
    }
    p.off.push_back(pairs.size());
    return p;
}

/* The allow sets of the queries as bitmaps (bit i of byte i / 8, FAISS's
 * IDSelectorBitmap layout); queries with the same tag list share one. */
struct Allow {
    size_t n = 0, bytes = 0;
    std::vector<std::vector<uint8_t>> maps;
    std::vector<size_t> of_query;   // query -> index into maps
    std::vector<size_t> count;      // query -> allowed vectors
    bool has(size_t q, size_t id) const {
        const uint8_t *m = maps[of_query[q]].data();
        return (m[id >> 3] >> (id & 7)) & 1;
    }
};

Allow build_allow(const Csr &filters, const Postings &post, size_t n, size_t nq) {
    if (filters.rows < nq) die("the filter file has fewer rows than the queries");
    Allow a;
    a.n = n;
    a.bytes = (n + 7) / 8;
    a.of_query.resize(nq);
    a.count.resize(nq);
    for (size_t q = 0; q < nq; q++) {
        const uint32_t *t = filters.val.data() + filters.off[q];
        size_t nt = filters.off[q + 1] - filters.off[q];
        if (nt == 0) die("query " + std::to_string(q) + " has an empty tag list");
        bool same = q > 0 && nt == filters.off[q] - filters.off[q - 1] &&
                    std::equal(t, t + nt, filters.val.data() + filters.off[q - 1]);
        if (same) {
            a.of_query[q] = a.of_query[q - 1];
            a.count[q] = a.count[q - 1];
            continue;
        }
        std::vector<uint8_t> m(a.bytes, 0);
        for (size_t j = 0; j < nt; j++) {
            size_t c = 0;
            const uint32_t *ids = post.find(t[j], &c);
            for (size_t i = 0; i < c; i++) m[ids[i] >> 3] |= (uint8_t)(1u << (ids[i] & 7));
        }
        size_t cnt = 0;
        for (uint8_t b : m) cnt += (size_t)__builtin_popcount(b);
        a.of_query[q] = a.maps.size();
        a.count[q] = cnt;
        a.maps.push_back(std::move(m));
    }
    return a;
}

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

size_t file_size(const std::string &path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) die(path + ": " + std::strerror(errno));
    return (size_t)st.st_size;
}

void save_atomic(const faiss::Index *index, const std::string &out) {
    std::string tmp = out + ".tmp";
    faiss::write_index(index, tmp.c_str());
    if (std::rename(tmp.c_str(), out.c_str()) != 0) die("cannot rename " + tmp + ": " + std::strerror(errno));
}

int cmd_build_faiss(int argc, char **argv) {
    std::string base, out, kind;
    long nlist = 0, m = 0, nbits = 8, threads = 2, seed = 1234;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("option " + a + " needs a value");
        std::string v = argv[++i];
        if (a == "--base") base = v;
        else if (a == "--out") out = v;
        else if (a == "--kind") kind = v;
        else if (a == "--nlist") nlist = parse_num(a, v);
        else if (a == "--m") m = parse_num(a, v);
        else if (a == "--nbits") nbits = parse_num(a, v);
        else if (a == "--threads") threads = std::max(1L, parse_num(a, v));
        else if (a == "--seed") seed = parse_num(a, v);
        else die("build-faiss: unknown option " + a);
    }
    if (base.empty() || out.empty() || (kind != "sel" && kind != "post"))
        die("build-faiss needs --base, --out and --kind sel|post");
    check_native();
    Matrix<float> b = read_normalised(base);
    const size_t n = b.rows, d = b.cols;
    if (nlist == 0) nlist = std::max(1L, std::lround(std::sqrt((double)n)));
    if (kind == "post") nbits = 4;
    if (m == 0) m = kind == "post" ? (long)(d / 2) : (long)(d / 4);
    if (m < 1 || d % (size_t)m != 0) die("d is not a multiple of M (pass --m)");
    omp_set_num_threads((int)threads);
    double w0 = now(CLOCK_MONOTONIC);
    auto *quantizer = new faiss::IndexFlatIP((fidx)d);
    std::unique_ptr<faiss::IndexIVF> ivf;
    std::string desc;
    if (kind == "sel") {
        auto *pq = new faiss::IndexIVFPQ(quantizer, d, (size_t)nlist, (size_t)m, (size_t)nbits,
                                         faiss::METRIC_INNER_PRODUCT);
        pq->by_residual = true;
        pq->pq.cp.seed = (int)seed;
        ivf.reset(pq);
        desc = "IVF" + std::to_string(nlist) + ",PQ" + std::to_string(m) + "x" + std::to_string(nbits);
    } else {
        auto *fs = new faiss::IndexIVFPQFastScan(quantizer, d, (size_t)nlist, (size_t)m, 4,
                                                 faiss::METRIC_INNER_PRODUCT);
        fs->by_residual = true;
        fs->pq.cp.seed = (int)seed;
        ivf.reset(fs);
        desc = "IVF" + std::to_string(nlist) + ",PQ" + std::to_string(m) + "x4fs";
    }
    ivf->own_fields = true;
    ivf->cp.seed = (int)seed;
    ivf->train((fidx)n, b.data.data());
    ivf->add((fidx)n, b.data.data());
    double build_s = now(CLOCK_MONOTONIC) - w0;
    save_atomic(ivf.get(), out);
    std::printf("faiss_version=%d.%d.%d\n", FAISS_VERSION_MAJOR, FAISS_VERSION_MINOR,
                FAISS_VERSION_PATCH);
    std::printf("compile_options=%s\n", faiss::get_compile_options().c_str());
    std::printf("description=%s by_residual=1 metric=ip (+ exact refine from the float vectors)\n",
                desc.c_str());
    std::printf("n=%zu\nd=%zu\nnlist=%ld\nm=%ld\nnbits=%ld\nbuild_s=%.2f\n", n, d, nlist, m, nbits,
                build_s);
    // the float vectors for the refine step count as in IndexRefineFlat
    std::printf("bytes_per_vector=%.1f\n", (double)(file_size(out) + n * d * 4) / (double)n);
    std::printf("list_imbalance=%.3f\n", ivf->invlists->imbalance_factor());
    return 0;
}

size_t hnsw_bytes(const hnswlib::HierarchicalNSW<float> &h) {
    size_t bytes = 9 * sizeof(size_t) + sizeof(int) + sizeof(unsigned) + sizeof(double);
    bytes += h.cur_element_count * h.size_data_per_element_;
    for (size_t i = 0; i < h.cur_element_count; i++)
        bytes += sizeof(unsigned) + (size_t)h.element_levels_[i] * h.size_links_per_element_;
    return bytes;
}

int cmd_build_hnsw(int argc, char **argv) {
    std::string base, out;
    long M = 16, efc = 200, threads = 2;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("option " + a + " needs a value");
        std::string v = argv[++i];
        if (a == "--base") base = v;
        else if (a == "--out") out = v;
        else if (a == "--M") M = parse_num(a, v);
        else if (a == "--efc") efc = parse_num(a, v);
        else if (a == "--threads") threads = std::max(1L, parse_num(a, v));
        else die("build-hnsw: unknown option " + a);
    }
    if (base.empty() || out.empty()) die("build-hnsw needs --base and --out");
    Matrix<float> b = read_normalised(base);
    hnswlib::InnerProductSpace space(b.cols);
    double w0 = now(CLOCK_MONOTONIC);
    hnswlib::HierarchicalNSW<float> h(&space, b.rows, (size_t)M, (size_t)efc, 100);
    h.addPoint(b.data.data(), 0);
    std::atomic<size_t> next{1};
    auto worker = [&]() {
        for (;;) {
            size_t s = next.fetch_add(64);
            if (s >= b.rows) break;
            size_t e = std::min(b.rows, s + 64);
            for (size_t i = s; i < e; i++) h.addPoint(b.data.data() + i * b.cols, i);
        }
    };
    std::vector<std::thread> pool;
    for (long t = 0; t < threads; t++) pool.emplace_back(worker);
    for (auto &t : pool) t.join();
    double build_s = now(CLOCK_MONOTONIC) - w0;
    std::string tmp = out + ".tmp";
    h.saveIndex(tmp);
    if (std::rename(tmp.c_str(), out.c_str()) != 0) die("cannot rename " + tmp);
    std::printf("description=hnswlib HierarchicalNSW M=%ld efConstruction=%ld inner product\n", M, efc);
    std::printf("n=%zu\nd=%zu\nbuild_s=%.2f\nbytes_per_vector=%.1f\n", b.rows, b.cols, build_s,
                (double)hnsw_bytes(h) / (double)b.rows);
    return 0;
}

/* The top k of (score, id) pairs by score, descending, into ids. */
void top_k(std::vector<std::pair<float, int64_t>> &cand, size_t k, int64_t *ids) {
    size_t m = std::min(k, cand.size());
    std::partial_sort(cand.begin(), cand.begin() + (long)m, cand.end(),
                      [](const std::pair<float, int64_t> &a, const std::pair<float, int64_t> &b) {
                          return a.first > b.first || (a.first == b.first && a.second < b.second);
                      });
    for (size_t i = 0; i < k; i++) ids[i] = i < m ? cand[i].second : -1;
}

int cmd_search(int argc, char **argv) {
    std::string system, index_path, base_path, query_path, tags_path, filters_path, gt_path;
    std::string settings;
    long k = 10, repeat = 1, implem = 11, min_queries = 200, nq_limit = 0;
    double max_seconds = 0, saturate = 0, min_qps = 0;
    std::vector<std::pair<long, double>> saturated;  // (a, b) settings that reached --saturate
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (i + 1 >= argc) die("option " + a + " needs a value");
        std::string v = argv[++i];
        if (a == "--system") system = v;
        else if (a == "--index") index_path = v;
        else if (a == "--base") base_path = v;
        else if (a == "--query") query_path = v;
        else if (a == "--tags") tags_path = v;
        else if (a == "--filters") filters_path = v;
        else if (a == "--gt") gt_path = v;
        else if (a == "--settings") settings = v;
        else if (a == "--k") k = parse_num(a, v);
        else if (a == "--repeat") repeat = std::max(1L, parse_num(a, v));
        else if (a == "--implem") implem = parse_num(a, v);
        else if (a == "--nq") nq_limit = parse_num(a, v);
        else if (a == "--min-queries") min_queries = std::max(1L, parse_num(a, v));
        else if (a == "--max-seconds") max_seconds = std::strtod(v.c_str(), nullptr);
        else if (a == "--saturate") saturate = std::strtod(v.c_str(), nullptr);
        else if (a == "--min-qps") min_qps = std::strtod(v.c_str(), nullptr);
        else die("search: unknown option " + a);
    }
    if (index_path.empty() || base_path.empty() || query_path.empty() || tags_path.empty() ||
        filters_path.empty() || gt_path.empty() || settings.empty())
        die("search needs --index --base --query --tags --filters --gt --settings");
    const bool is_hnsw = system == "hnsw-post", is_sel = system == "faiss-sel",
               is_post = system == "faiss-post";
    if (!is_hnsw && !is_sel && !is_post) die("--system is faiss-sel, faiss-post or hnsw-post");
    if (k < 1) die("--k must be >= 1");

    Matrix<float> base = read_normalised(base_path);
    Matrix<float> q = read_normalised(query_path);
    Matrix<int32_t> gt = read_vecs<int32_t>(gt_path);
    const size_t n = base.rows, d = base.cols;
    size_t nq = std::min(q.rows, gt.rows);
    if (nq_limit > 0) nq = std::min(nq, (size_t)nq_limit);
    if (q.cols != d) die("query and base dimensions differ");
    if (gt.cols < (size_t)k) die("ground truth has fewer columns than --k");
    Csr btags = read_csr(tags_path);
    if (btags.rows != n) die("the tag file does not have one row per base vector");
    Postings post = build_postings(btags);
    Allow allow = build_allow(read_csr(filters_path), post, n, nq);
    for (size_t i = 0; i < nq; i++)
        if (allow.count[i] == 0) die("query " + std::to_string(i) + " allows nothing");

    std::unique_ptr<faiss::Index> loaded;
    faiss::IndexIVF *ivf = nullptr;
    std::unique_ptr<hnswlib::InnerProductSpace> space;
    std::unique_ptr<hnswlib::HierarchicalNSW<float>> h;
    if (is_hnsw) {
        space = std::make_unique<hnswlib::InnerProductSpace>(d);
        h = std::make_unique<hnswlib::HierarchicalNSW<float>>(space.get(), index_path, false, n);
        if (h->cur_element_count != n) die(index_path + ": not an index of this base");
    } else {
        check_native();
        omp_set_num_threads(1);
        loaded.reset(faiss::read_index(index_path.c_str()));
        ivf = dynamic_cast<faiss::IndexIVF *>(loaded.get());
        if (!ivf || (size_t)ivf->ntotal != n || (size_t)ivf->d != d) die(index_path + ": not an IVF index of this base");
        if (is_sel && !dynamic_cast<faiss::IndexIVFPQ *>(ivf)) die(index_path + ": faiss-sel needs an IndexIVFPQ");
        if (is_post) {
            auto *fs = dynamic_cast<faiss::IndexIVFPQFastScan *>(ivf);
            if (!fs) die(index_path + ": faiss-post needs an IndexIVFPQFastScan");
            fs->implem = (int)implem;
        }
    }
    // one IDSelectorBitmap per distinct allow set
    std::vector<std::unique_ptr<faiss::IDSelectorBitmap>> sels;
    for (auto &m : allow.maps) sels.emplace_back(new faiss::IDSelectorBitmap(allow.bytes, m.data()));

    std::vector<int64_t> labels(nq * (size_t)k);
    std::vector<std::pair<float, int64_t>> cand;
    std::vector<fidx> blab;
    std::vector<float> bdis;
    std::printf("a,b,recall,qps_wall,qps_cpu,nq,candidates\n");
    std::fflush(stdout);
    size_t pos = 0;
    while (pos < settings.size()) {
        size_t comma = settings.find(',', pos);
        std::string s = settings.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
        pos = comma == std::string::npos ? settings.size() : comma + 1;
        size_t colon = s.find(':');
        if (colon == std::string::npos) die("setting '" + s + "' is not A:B");
        long a = parse_num("setting", s.substr(0, colon));
        char *end = nullptr;
        double b = std::strtod(s.c_str() + colon + 1, &end);
        if (a < 1 || !(b > 0) || *end) die("bad setting '" + s + "'");
        bool skip = false;
        for (auto &sv : saturated) skip |= sv.first <= a && sv.second <= b;
        if (skip) {
            std::printf("%ld,%g,-1,0,0,0,0\n", a, b);
            continue;
        }
        double best_wall = 1e300, best_cpu = 1e300, cand_total = 0;
        size_t done = nq;
        for (long r = 0; r < repeat; r++) {
            std::fill(labels.begin(), labels.end(), -1);
            cand_total = 0;
            double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_THREAD_CPUTIME_ID);
            size_t i = 0;
            for (; i < (r == 0 ? nq : done); i++) {
                const float *x = q.data.data() + i * d;
                int64_t *out = labels.data() + i * (size_t)k;
                const double sel = (double)allow.count[i] / (double)n;
                if (is_hnsw) {
                    size_t kp = std::min(n, (size_t)std::ceil((double)k * b / sel));
                    h->setEf(std::max((size_t)a, kp));
                    auto res = h->searchKnn(x, kp);
                    cand.clear();
                    while (!res.empty()) {
                        size_t id = res.top().second;
                        if (allow.has(i, id)) cand.push_back({1.0f - res.top().first, (int64_t)id});
                        res.pop();
                    }
                    top_k(cand, (size_t)k, out);
                    cand_total += (double)kp;
                } else {
                    size_t kb = is_sel ? (size_t)std::ceil((double)k * b)
                                       : std::min(n, (size_t)std::ceil((double)k * b / sel));
                    blab.resize(kb);
                    bdis.resize(kb);
                    if (is_sel) {
                        faiss::SearchParametersIVF sp;
                        sp.nprobe = std::min((size_t)a, ivf->nlist);
                        sp.sel = sels[allow.of_query[i]].get();
                        ivf->search(1, x, (fidx)kb, bdis.data(), blab.data(), &sp);
                    } else {
                        ivf->nprobe = std::min((size_t)a, ivf->nlist);
                        ivf->search(1, x, (fidx)kb, bdis.data(), blab.data());
                    }
                    cand.clear();
                    for (size_t j = 0; j < kb; j++) {
                        fidx id = blab[j];
                        if (id < 0 || (is_post && !allow.has(i, (size_t)id))) continue;
                        cand.push_back({faiss::fvec_inner_product(x, base.data.data() + (size_t)id * d, d),
                                        (int64_t)id});
                    }
                    top_k(cand, (size_t)k, out);
                    cand_total += (double)kb;
                }
                if (r == 0 && max_seconds > 0 && (long)i + 1 >= min_queries &&
                    now(CLOCK_THREAD_CPUTIME_ID) - c0 > max_seconds) {
                    i++;
                    break;
                }
            }
            if (r == 0) done = i;
            best_cpu = std::min(best_cpu, now(CLOCK_THREAD_CPUTIME_ID) - c0);
            best_wall = std::min(best_wall, now(CLOCK_MONOTONIC) - w0);
        }
        size_t hits = 0;
        for (size_t i = 0; i < done; i++) {
            const int32_t *truth = gt.data.data() + i * gt.cols;
            const int64_t *got = labels.data() + i * (size_t)k;
            for (long x = 0; x < k; x++) {
                if (got[x] < 0) continue;
                for (long y = 0; y < k; y++)
                    if (truth[y] == got[x]) { hits++; break; }
            }
        }
        const double recall = (double)hits / ((double)done * (double)k);
        if ((saturate > 0 && recall >= saturate) || (double)done / best_cpu < min_qps)
            saturated.push_back({a, b});
        std::printf("%ld,%g,%.4f,%.1f,%.1f,%zu,%.0f\n", a, b, recall,
                    (double)done / best_wall, (double)done / best_cpu, done, cand_total / (double)done);
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
        std::printf(
            "usage: filter_baselines build-faiss --base B.fvecs --out F --kind sel|post [--nlist 0]\n"
            "                        [--m 0] [--nbits 8] [--threads 2] [--seed 1234]\n"
            "       filter_baselines build-hnsw --base B.fvecs --out H [--M 16] [--efc 200] [--threads 2]\n"
            "       filter_baselines search --system faiss-sel|faiss-post|hnsw-post --index X\n"
            "                        --base B.fvecs --query Q.fvecs --tags BASE.csr --filters F.csr\n"
            "                        --gt GT.ivecs [--k 10] --settings A:B,... [--repeat 1]\n"
            "                        [--max-seconds 0] [--min-queries 200] [--implem 11] [--nq N]\n"
            "                        [--saturate R] [--min-qps F]\n"
            "Filtered-search baselines (bench/filter.py): FAISS IVF-PQ with an IDSelector,\n"
            "FAISS IVF-PQ fast scan with post-filtering, hnswlib with post-filtering.\n");
        return argc < 2 ? 2 : 0;
    }
    try {
        std::string cmd = argv[1];
        if (cmd == "build-faiss") return cmd_build_faiss(argc, argv);
        if (cmd == "build-hnsw") return cmd_build_hnsw(argc, argv);
        if (cmd == "search") return cmd_search(argc, argv);
        die("unknown command " + cmd + " (build-faiss, build-hnsw, search)");
    } catch (const std::exception &e) {
        die(std::string("exception: ") + e.what());
    }
}
