"""POST /publish/<channel>: the load generator's publish request, sent with
django-eventstream's send_event."""

import hmac
import json

from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django_eventstream import send_event


@csrf_exempt
def publish(request, channel):
    if request.method != "POST":
        return JsonResponse({"error": "POST only"}, status=405)
    expected = "Bearer " + settings.BENCH_PUBLISH_KEY
    given = request.headers.get("Authorization", "")
    if not settings.BENCH_PUBLISH_KEY or not hmac.compare_digest(given, expected):
        return JsonResponse({"error": "bad publish key"}, status=401)
    try:
        body = json.loads(request.body)
        data = body["data"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'the body must be {"data": ...}'}, status=400)
    send_event(channel, body.get("type") or "message", data)
    return JsonResponse({"channel": channel}, status=201)
