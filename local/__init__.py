"""The local runtime: an embedded AWS (moto) deployed from the packaged template, and an
emulator of Lambda's DynamoDB-stream event-source mappings. Never shipped to Lambda."""
