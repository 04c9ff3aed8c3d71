// app/restore_lookup.h — what restore-like commands (restore --delta, diff,
// mount) say when a generation or device is not there: the message lists what
// exists, so the user can pick. Thread-safety: stateless.
#pragma once

#include <string>

#include "common/error.h"
#include "repo/repository.h"

namespace blkvault::app {

// "latest" or an id -> a committed generation; kNotFound lists the committed ones.
Result<repo::GenerationId> resolve_committed(repo::Repository& repository, const std::string& spec);

// The device's image in generation `id`; kNotFound lists the devices it has.
Result<repo::DeviceImage> find_device_image(repo::Repository& repository, repo::GenerationId id,
                                            const std::string& device);

}  // namespace blkvault::app
