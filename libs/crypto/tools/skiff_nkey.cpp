// skiff-nkey: makes NATS user nkeys for Skiff's services (scripts/lib/nats-auth.sh runs it).
//   skiff-nkey new SEED_FILE   writes a new seed to SEED_FILE (mode 0600) and prints its public key
//   skiff-nkey public SEED_FILE prints the public key of the seed in SEED_FILE
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "skiff/crypto/nkey.h"

int main(int argc, char** argv) {
  const std::string verb = argc == 3 ? argv[1] : "";
  if (verb == "new") {
    const auto pair = skiff::crypto::NewUserNkey();
    const int fd = ::open(argv[2], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::perror(argv[2]);
      return 1;
    }
    const std::string line = pair.seed + "\n";
    const bool written = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size());
    ::close(fd);
    if (!written) return 1;
    std::cout << pair.public_key << "\n";
    return 0;
  }
  if (verb == "public") {
    std::ifstream in(argv[2]);
    std::string seed;
    in >> seed;
    auto key = skiff::crypto::UserNkeyPublicKey(seed);
    if (!key) {
      std::cerr << argv[2] << ": not a user nkey seed\n";
      return 1;
    }
    std::cout << *key << "\n";
    return 0;
  }
  std::cerr << "usage: skiff-nkey new SEED_FILE | skiff-nkey public SEED_FILE\n";
  return 2;
}
