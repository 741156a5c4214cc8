# python:3.11-slim, pinned by digest so that a rebuild gets the same base; renew it on purpose
# (`docker buildx imagetools inspect python:3.11-slim` shows the current one).
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY billing ./billing
COPY workers ./workers
COPY schedules ./schedules
RUN pip install --no-cache-dir . && useradd --system billing
USER billing
CMD ["billing", "--help"]
