// minimal_tls_server CERT KEY PORT THREADS: answers every request with a fixed small JSON body.
#include <iostream>
#include <string>

#include "skiff/gateway/https_server.h"
#include "skiff/lifecycle/termination_signals.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: minimal_tls_server CERT KEY PORT THREADS\n";
    return 2;
  }
  skiff::lifecycle::TerminationSignals termination;  // before any thread starts
  skiff::gateway::HttpsServerOptions options;
  options.certificate_chain_file = argv[1];
  options.private_key_file = argv[2];
  options.port = static_cast<uint16_t>(std::stoi(argv[3]));
  options.threads = std::stoi(argv[4]);
  const std::string body = R"({"name":"bench","properties":{"provisioningState":"Pending"}})";
  skiff::gateway::HttpsServer server(options, [&body](const skiff::gateway::HttpRequest&) {
    skiff::gateway::HttpResponse response;
    response.body = body;
    response.headers.emplace_back("Content-Type", "application/json; charset=utf-8");
    return response;
  });
  server.Start();
  termination.Wait();
  server.Stop(1);
  return 0;
}
