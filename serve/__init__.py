"""The guard as a production HTTP service on Ray Serve.

`schemas` (request/response models), `scoring` (P(harmful) from verdict-token logprobs), `guard`
(GuardServer: the logic around an engine, no Ray), `service` (admission, deadlines, metrics),
`api` (the FastAPI app) and `app` (the Serve deployment and `build_app`). Only `app` imports Ray.
"""
