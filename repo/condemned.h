// repo/condemned.h — what gc condemned: files it deletes only once the backups
// that were running when it condemned them have ended (docs/FORMAT.md,
// "Removing generations and gc").
//
// Backups on object storage run alongside gc. A running backup may still
// reference what gc finds unreferenced: chunks it deduplicated against, the
// manifest of a parent that was pruned meanwhile, the packs it has uploaded
// and not yet committed. So gc never deletes what it has just found garbage.
// It condemns it: publishes the list (condemned/<ms>), then lists the backup
// markers alive at that moment and publishes them beside it
// (condemned/<ms>.backups). A backup publishes its marker before it reads the
// condemnations, and gc publishes a condemnation before it lists the markers,
// so every backup either is among the listed ones or sees the condemnation
// (and deduplicates against none of its packs). Once every listed marker is
// gone, a later gc (or the same one, when none was listed) deletes what it
// finds still unreferenced after replaying the manifests committed meanwhile.
//
// A condemnation only ever narrows what gc may delete: an item is deleted
// only when gc's own liveness check agrees at that time, so a damaged or
// forged condemnation can delay reclaiming space but never lose data.
// Thread-safety: stateless functions; the Storage must outlive the call.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::repo {

class Storage;

inline constexpr const char* kCondemnedDir = "condemned/";

// An unfinished multipart upload (object storage only).
struct UploadRef {
  std::string key;  // the object key, with the repository's prefix
  std::string upload_id;
  bool operator<(const UploadRef& o) const { return key < o.key || (key == o.key && upload_id < o.upload_id); }
};

struct Condemnation {
  std::string name;                       // "condemned/<20-digit unix ms>"
  std::vector<std::string> packs;         // pack files, indexed or not
  std::vector<GenerationId> manifests;    // manifests of removed generations (with their tombstones)
  std::vector<std::string> files;         // other files: orphaned tombstones, unpublished temporary files
  std::vector<UploadRef> uploads;         // unfinished multipart uploads
  // The backup markers alive when it was published; nullopt while its
  // ".backups" file is missing (gc stopped in between: it is void).
  std::optional<std::vector<std::string>> backups;
  // Why it could not be read, when so: its list or its ".backups" file is
  // damaged. Then it is void too (gc deletes it and condemns anew; a backup
  // warns and goes on, as gc deletes nothing under it).
  std::optional<std::string> damage;

  bool empty() const { return packs.empty() && manifests.empty() && files.empty() && uploads.empty(); }
};

// Every condemnation in `storage`, oldest first; one that cannot be parsed is
// returned with its `damage`. kUnsupported for a format version this blkvault
// does not know; storage errors as they are.
Result<std::vector<Condemnation>> load_condemnations(Storage& storage);

// Publishes `c` under a name later than every existing condemnation (sets
// c.name). Its ".backups" file is written separately, by publish_backups.
Status publish_condemnation(Storage& storage, Condemnation& c);
Status publish_backups(Storage& storage, const Condemnation& c, const std::vector<std::string>& markers);

// Deletes a condemnation: its list first, then its ".backups" file, so that a
// stop in between leaves at most a ".backups" file with no list, which
// load_condemnations ignores and the next remove_orphans deletes.
Status remove_condemnation(Storage& storage, const Condemnation& c);
// ".backups" files whose list is gone.
Status remove_orphan_backups(Storage& storage);

}  // namespace blkvault::repo
