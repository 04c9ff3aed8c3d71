#include "app/key_commands.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <iostream>
#include <iterator>

#include "app/passphrase.h"
#include "app/repo_access.h"
#include "common/file_io.h"
#include "repo/repository.h"

namespace blkvault::app {
namespace {

Result<repo::KdfParams> kdf_from(uint64_t ops, const std::string& mem_text) {
  auto mem = parse_size(mem_text);
  if (!mem) return fail(std::move(mem).error().wrap("--kdf-mem"));
  if (*mem < (64u << 10) || *mem > (4ull << 30) || ops < 1 || ops > 64) {
    return fail(ErrorCode::kInvalidArgument, "--kdf-mem must be from 64K to 4G and --kdf-ops from 1 to 64");
  }
  return repo::KdfParams{ops, *mem};
}

Status require_encrypted(const repo::Repository& r, const std::string& path) {
  if (r.config().cipher == repo::Cipher::kNone) {
    return fail(ErrorCode::kInvalidArgument, "repository " + path + " is not encrypted: it has no keys");
  }
  return {};
}

}  // namespace

void KeyCommands::add_to(CLI::App& cli) {
  key_ = cli.add_subcommand("key", "Manage the passphrases and the master key of an encrypted repository");
  key_->require_subcommand(1);
  list_ = key_->add_subcommand("list", "List the key files (one per passphrase); * marks the one used now");
  add_ = key_->add_subcommand("add", "Add a passphrase (a new key file wrapping the same master key)");
  remove_ = key_->add_subcommand("remove", "Remove a key file (never the one used now, never the last)");
  remove_->add_option("ID", remove_id_, "Key id, as 'key list' shows it")->required();
  passwd_ = key_->add_subcommand("passwd", "Change the passphrase used now (add the new key, remove the old)");
  export_ = key_->add_subcommand("export", "Print a paper backup of the master key (keep it offline and safe)");
  import_ = key_->add_subcommand("import",
                                 "Regain access from a paper backup: add a key file with a new passphrase");
  import_->add_option("--paper-file", paper_file_, "The paper backup (default: read it from standard input)");
  for (auto* c : {add_, passwd_, import_}) {
    c->add_option("--new-password-file", new_password_file_,
                  "Read the new passphrase from FILE (else $BLKVAULT_NEW_PASSWORD, else asked twice)");
    c->add_option("--kdf-ops", kdf_ops_, "Argon2id passes for the new passphrase");
    c->add_option("--kdf-mem", kdf_mem_, "Argon2id memory for the new passphrase");
  }
}

bool KeyCommands::parsed() const { return key_ != nullptr && key_->parsed(); }

Status KeyCommands::run(Context& ctx) {
  if (list_->parsed() || export_->parsed()) {
    BLKVAULT_TRY_ASSIGN(auto r, open_repository(ctx, false));
    BLKVAULT_TRY(require_encrypted(*r, ctx.repo));
    if (export_->parsed()) {
      const std::string paper = r->paper_key();
      ctx.out.result(paper);
      ctx.out.result_json({{"repository", r->config().id}, {"paper_key", paper}});
      return {};
    }
    BLKVAULT_TRY_ASSIGN(auto keys, r->list_keys());
    std::string text;
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& k : keys) {
      text += fmt::format("{} {}  created {}  {}\n", k.current ? "*" : " ", k.id, k.created, k.where);
      arr.push_back({{"id", k.id}, {"created", k.created}, {"where", k.where}, {"current", k.current}});
    }
    ctx.out.result(text);
    ctx.out.result_json({{"keys", arr}});
    return {};
  }
  BLKVAULT_TRY_ASSIGN(auto kdf, kdf_from(kdf_ops_, kdf_mem_));
  if (import_->parsed()) {
    std::string paper;
    if (!paper_file_.empty()) {
      BLKVAULT_TRY_ASSIGN(paper, read_file(paper_file_));
    } else {
      paper.assign(std::istreambuf_iterator<char>(std::cin), {});
    }
    BLKVAULT_TRY_ASSIGN(auto r, open_repository(ctx, true, paper));
    BLKVAULT_TRY(require_encrypted(*r, ctx.repo));
    BLKVAULT_TRY_ASSIGN(auto pass, read_new_passphrase(ctx, new_password_file_));
    BLKVAULT_TRY_ASSIGN(auto id, r->add_key(pass, kdf));
    ctx.out.result(fmt::format("imported the master key: the new passphrase opens repository {} (key {})", ctx.repo, id));
    ctx.out.result_json({{"added", id}});
    return {};
  }
  BLKVAULT_TRY_ASSIGN(auto r, open_repository(ctx, true));
  BLKVAULT_TRY(require_encrypted(*r, ctx.repo));
  if (remove_->parsed()) {
    BLKVAULT_TRY(r->remove_key(remove_id_));
    ctx.out.result(fmt::format("removed key {}", remove_id_));
    ctx.out.result_json({{"removed", remove_id_}});
    return {};
  }
  BLKVAULT_TRY_ASSIGN(auto before, r->list_keys());
  BLKVAULT_TRY_ASSIGN(auto pass, read_new_passphrase(ctx, new_password_file_));
  BLKVAULT_TRY_ASSIGN(auto id, r->add_key(pass, kdf));
  if (add_->parsed()) {
    ctx.out.result(fmt::format("added key {}", id));
    ctx.out.result_json({{"added", id}});
    return {};
  }
  // passwd: the new key is in place; now drop the one used to open.
  if (r->config().key_mode == "repokey") {
    for (const auto& k : before) {
      if (k.current) {
        BLKVAULT_TRY(r->storage().remove(k.where));
      }
    }
  }
  ctx.out.result(fmt::format("changed the passphrase (new key {})", id));
  ctx.out.result_json({{"added", id}});
  return {};
}

}  // namespace blkvault::app
