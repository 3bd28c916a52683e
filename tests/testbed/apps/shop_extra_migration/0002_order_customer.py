from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="order",
            name="customer",
            # nullable: the app's model does not know this field, so its inserts leave it empty
            field=models.CharField(blank=True, max_length=100, null=True),
        ),
    ]
