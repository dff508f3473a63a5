// The admin token file's rules (common/grpc_util.h read_token_file): readable by its owner and at most the
// owner's group (a Kubernetes Secret is mounted root:fsGroup 0440), never by others nor writable by the
// group; one word; errors say what to run.
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include <gtest/gtest.h>

#include "common/grpc_util.h"

namespace freekv {
namespace {

std::string token_file(const std::string& text, mode_t mode) {
  const std::string path = "/tmp/freekv-token-test-" + std::to_string(getpid());
  std::ofstream(path) << text;
  chmod(path.c_str(), mode);
  return path;
}

TEST(TokenFile, OwnerAndGroupMayReadIt) {
  for (mode_t mode : {0600, 0400, 0640, 0440}) {
    const std::string path = token_file("s3cret\n", mode);
    auto token = read_token_file(path);
    ASSERT_TRUE(token.ok()) << std::oct << mode << ": " << token.status();
    EXPECT_EQ(*token, "s3cret");
    std::remove(path.c_str());
  }
}

TEST(TokenFile, OthersOrAWritableGroupAreRefusedWithTheFix) {
  for (mode_t mode : {0644, 0604, 0660, 0620, 0666}) {
    const std::string path = token_file("s3cret\n", mode);
    auto token = read_token_file(path);
    ASSERT_EQ(token.status().code(), absl::StatusCode::kPermissionDenied) << std::oct << mode;
    EXPECT_NE(token.status().message().find("chmod 600"), std::string_view::npos) << token.status();
    std::remove(path.c_str());
  }
}

TEST(TokenFile, MissingEmptyOrSeveralWordsAreClearErrors) {
  EXPECT_EQ(read_token_file("/tmp/freekv-no-such-token").status().code(), absl::StatusCode::kNotFound);
  const std::string empty = token_file("  \n", 0600);
  EXPECT_EQ(read_token_file(empty).status().code(), absl::StatusCode::kInvalidArgument);
  std::remove(empty.c_str());
  const std::string two = token_file("a b\n", 0600);
  EXPECT_EQ(read_token_file(two).status().code(), absl::StatusCode::kInvalidArgument);
  std::remove(two.c_str());
}

}  // namespace
}  // namespace freekv
