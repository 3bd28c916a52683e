from django.db import models


class Order(models.Model):
    note = models.TextField(blank=True)
    filename = models.CharField(max_length=255, blank=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
