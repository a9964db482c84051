"""A client for registries that speak the OCI Distribution API (Docker Hub, distribution, Harbor, ...).

mediatypes   the manifest, config and layer media types we know
platforms    os/arch[/variant]: the host's, parsing `--platform`, choosing from an index
manifests    parsing and checking manifests and indexes
settings     insecure registries, docker.io mirrors, timeouts and retries (flags, env, a config file)
transport    HTTP with requests: scheme choice, proxies, timeouts, retries with backoff and Retry-After
credentials  ~/.docker/config.json: auths, credsStore/credHelpers helpers, login/logout storage
auth         WWW-Authenticate challenges, Bearer tokens (renewed when they expire), Basic auth
client       one repository on one registry: manifests, blobs (verified, resumable), uploads
"""
