"""JSON endpoints of the sample shop (see docs/architecture.md, "The sample app")."""
import os
import socket

from django.conf import settings
from django.db import connection, transaction
from django.http import JsonResponse as _JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .models import Order


def JsonResponse(data, status=200):
    """Every answer says which server gave it, so clients can tell who served them during a move."""
    return _JsonResponse(dict(data, server=socket.gethostname()), status=status)


def _write_durably(path, data):
    """Write data to path so it survives a crash once this returns: temp file, fsync, rename, fsync dir."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@csrf_exempt
@require_POST
def write(request):
    note = request.POST.get("note")
    if "content" in request.FILES:
        content = request.FILES["content"].read()
    elif "content" in request.POST:
        content = request.POST["content"].encode("utf-8")
    else:
        content = None
    if note is None or content is None:
        return JsonResponse({"error": "form fields note and content are required"}, status=400)
    with transaction.atomic():
        order = Order.objects.create(note=note)
        order.filename = "uploads/%d.txt" % order.id
        order.save(update_fields=["filename"])
        _write_durably(os.path.join(settings.DATA_DIR, order.filename), content)
    # The commit above returned, so the row is durable too.
    return JsonResponse({"id": order.id, "file": order.filename})


@require_GET
def read(request, order_id):
    try:
        order = Order.objects.get(pk=order_id)
    except Order.DoesNotExist:
        return JsonResponse({"error": "order %d not found" % order_id}, status=404)
    try:
        with open(os.path.join(settings.DATA_DIR, order.filename), "rb") as handle:
            content = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return JsonResponse({"error": "file %s of order %d is missing" % (order.filename, order.id)}, status=500)
    return JsonResponse({"id": order.id, "note": order.note, "content": content})


@require_GET
def orders(request):
    ids = list(Order.objects.order_by("id").values_list("id", flat=True))
    return JsonResponse({"count": len(ids), "ids": ids})


@require_GET
def health(request):
    try:
        commit = settings.REVISION_FILE.read_text(encoding="utf-8").strip()
    except OSError:
        commit = None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            database = cursor.fetchone() == (1,)
    except Exception:  # any database failure means "not healthy", reported, not raised
        database = False
    status = "ok" if database and commit else "error"
    return JsonResponse(
        {"status": status, "commit": commit, "database": database},
        status=200 if status == "ok" else 503,
    )
