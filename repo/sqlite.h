// repo/sqlite.h — a thin RAII layer over the SQLite C API for the index.
//
// Every failure becomes an Error naming the statement's purpose and SQLite's
// message; SQLITE_CORRUPT/SQLITE_NOTADB become kCorrupt (so the repository can
// rebuild a damaged index), SQLITE_FULL kNoSpace, SQLITE_BUSY kLocked.
// Thread-safety: a Db and its statements are used by one thread at a time (the
// repository serialises access with its own mutex).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <sqlite3.h>

#include "common/env.h"
#include "common/error.h"
#include "repo/sqlite_vfs.h"

namespace blkvault::repo::sql {

class Db;

class Stmt {
 public:
  Stmt() = default;
  Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt();

  // Binding (1-based, as SQLite). Returns *this to chain.
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, std::string_view v);
  Stmt& bind_blob(int i, std::span<const uint8_t> v);
  Stmt& bind_null(int i);

  // true: a row is ready; false: done.
  Result<bool> step();
  // Runs to completion (for statements without rows).
  Status run();
  void reset();

  int64_t int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool is_null(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string text(int col) const;
  std::span<const uint8_t> blob(int col) const;

 private:
  friend class Db;
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

class Db {
 public:
  // With `env`, every write, sync and delete of the database's files goes
  // through it (repo/sqlite_vfs.h); null: SQLite's own VFS, as in production.
  // `env` must outlive the Db.
  static Result<Db> open(const std::string& path, Env* env = nullptr);
  Db(Db&& o) noexcept : db_(o.db_), vfs_(std::move(o.vfs_)) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db();

  Status exec(std::string_view sql);
  Result<Stmt> prepare(std::string_view sql);
  // The single integer a query returns (or nullopt when it returns no row / NULL).
  Result<std::optional<int64_t>> query_int(std::string_view sql);
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

  // An Error for the connection's last failure.
  Error error(std::string_view what) const;

 private:
  Db(sqlite3* db, std::unique_ptr<EnvVfs> vfs) : db_(db), vfs_(std::move(vfs)) {}
  sqlite3* db_ = nullptr;
  std::unique_ptr<EnvVfs> vfs_;  // closed after db_ (the connection uses it)
};

// Classifies a SQLite result code.
ErrorCode code_for(int rc);

// BEGIN IMMEDIATE … COMMIT, rolled back when destroyed uncommitted.
class Transaction {
 public:
  static Result<Transaction> begin(Db& db);
  Transaction(Transaction&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();
  Status commit();

 private:
  explicit Transaction(Db* db) : db_(db) {}
  Db* db_;
};

}  // namespace blkvault::repo::sql
