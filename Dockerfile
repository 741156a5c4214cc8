FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY billing ./billing
COPY workers ./workers
COPY schedules ./schedules
RUN pip install --no-cache-dir . && useradd --system billing
USER billing
CMD ["billing", "--help"]
